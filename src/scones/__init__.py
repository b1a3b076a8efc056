"""Scones Unlimited: route delivery drivers by a photo of their vehicle."""

__version__ = "0.1.0"
