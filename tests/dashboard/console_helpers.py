"""The console's tests use the shared browser helpers."""

from browser_helpers import chromium, console_errors, serving

__all__ = ["chromium", "console_errors", "serving"]
