"""scones.monitor"""
