"""Where commands write: results to stdout (``out``), progress and notes to stderr (``console``).

Lines are never wrapped or cut by rich (``soft_wrap``): a terminal wraps them itself, and
piped output keeps whole values. Listings go through ``print_rows``: a table on a terminal;
piped, one row a line with tab-separated whole values and no header, as ``gh`` and
``kubectl`` print, so ``scones executions list | grep KEY`` finds every key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """A listing's column: its header, alignment, and how much of a value a table shows."""

    header: str
    justify: Literal["left", "right"] = "left"
    max_chars: int | None = None  # on a terminal only: piped output keeps whole values


def stdout_is_terminal() -> bool:
    """Whether stdout is a terminal (not a pipe or a file); FORCE_COLOR does not change it."""
    try:
        return sys.stdout.isatty()
    except ValueError:  # closed
        return False


def plain(cell: Cell) -> str:
    """A cell as one line of text without styles: tabs and newlines become spaces."""
    text = cell.plain if isinstance(cell, Text) else cell
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def print_rows(
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[Cell]],
    *,
    title: str | None = None,
) -> None:
    """A listing: a rich table on a terminal, tab-separated lines when piped."""
    specs = [column if isinstance(column, Column) else Column(column) for column in columns]
    if not stdout_is_terminal():
        for row in rows:
            typer.echo("\t".join(plain(cell) for cell in row))
        return
    table = Table(title=title)
    for spec in specs:
        table.add_column(spec.header, justify=spec.justify, overflow="fold")
    for row in rows:
        cells = zip(row, specs, strict=True)
        table.add_row(*(_shorten(cell, spec.max_chars) for cell, spec in cells))
    out.print(table)


def _shorten(cell: Cell, max_chars: int | None) -> Cell:
    if max_chars is None or len(cell) <= max_chars:
        return cell
    return cell[: max_chars - 1] + "…"


def print_json_lines(rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object a line (``--json`` of a listing)."""
    for row in rows:
        typer.echo(json.dumps(row))
