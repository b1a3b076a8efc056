"""scones.workflow"""
