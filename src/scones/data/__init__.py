"""scones.data"""
