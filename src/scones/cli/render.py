"""Where commands write: results to stdout (``out``), progress and notes to stderr (``console``)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)
out = Console()
