"""scones.serving"""
