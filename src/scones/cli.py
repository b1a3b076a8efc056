"""The `scones` command: a thin layer of typer commands over the stage packages.

Heavy imports (torch, onnxruntime, boto3) happen inside commands, so `scones --help` is fast.
Every command's help text is its documentation; tests fail when one lacks it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from scones import __version__
from scones.errors import SconesError
from scones.settings import Settings, get_settings

app = typer.Typer(
    name="scones",
    help="Scones Unlimited: classify a driver's vehicle photo (bicycle or motorcycle) and "
    "route only confident answers. Stage data, train, serve, run the workflow, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

StoreOption = Annotated[
    Optional[str],
    typer.Option(
        "--store", help="Object store URI (folder, file:///abs, s3://bucket/prefix). "
        "Default: SCONES_STORE or ./.scones/store."
    ),
]


def settings() -> Settings:
    return get_settings()


def store_uri(store: str | None) -> str:
    return store or settings().store


def open_configured_store(store: str | None):  # noqa: ANN201 - returns an ObjectStore
    from scones.store import open_store

    return open_store(store_uri(store), s3_endpoint_url=settings().s3_endpoint_url)


@app.callback()
def _root() -> None:
    """Scones Unlimited: classify a driver's vehicle photo and route confident answers."""


@app.command()
def version() -> None:
    """Print the installed version of scones."""
    out.print(__version__)


# --- stage (scones.data) ---------------------------------------------------------------

# --- train / evaluate / models (scones.model) ------------------------------------------

# --- serve / invoke (scones.serving) ---------------------------------------------------

# --- functions / run / executions (scones.functions, scones.workflow) ------------------

# --- monitor / dashboard (scones.monitor) ----------------------------------------------

# --- demo / watch / up -----------------------------------------------------------------


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app()  # standalone: click reports usage errors itself (exit 2)
    except SconesError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("aborted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
