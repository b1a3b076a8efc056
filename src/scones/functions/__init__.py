"""scones.functions"""
