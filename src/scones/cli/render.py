"""Where commands write: results to stdout (``out``), progress and notes to stderr (``console``).

Lines are never wrapped or cut by rich (``soft_wrap``): a terminal wraps them itself, and
piped output keeps whole values.
"""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
