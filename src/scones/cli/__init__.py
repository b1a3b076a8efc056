"""The `scones` command: a thin layer of typer commands over the stage packages.

Layout (one module per command group; each command body parses its options, calls one
library function and renders the result):

- ``data.py``      stage
- ``model.py``     train, evaluate
- ``registry.py``  models list/show/promote
- ``serving.py``   serve, invoke
- ``workflow.py``  functions package, run, executions list/show/history, watch
- ``monitor.py``   monitor, dashboard
- ``review.py``    review list/show/label/undo/export/sync, compare
- ``service.py``   demo, up
- ``deploy.py``    deploy aws, destroy aws
- ``options.py``   option types shared by several commands (``--store``, ``--name`` ...) and
  the settings their defaults come from
- ``render.py``    the two consoles (results on stdout, progress on stderr), ``print_rows``
  for listings (a table on a terminal, tab-separated whole values when piped) and
  ``print_json_lines`` for their ``--json``

Library errors name parameters (``{since}``); ``main`` shows them as flags
(``options.flag_for``: ``since`` -> ``--since``, with a table for the few that differ).

To add a command: write it as a plain function in its group's module (a sub-command goes on
that module's sub-app, e.g. ``registry.models_app``), then register a top-level command in the table
below, where the order is the order ``scones --help`` lists them. Heavy imports (torch,
onnxruntime, boto3) stay inside command bodies, so ``scones --help`` is fast. Every command
and option has help text; tests/test_cli_help.py fails otherwise.
"""

from __future__ import annotations

import sys

import typer

from scones import __version__
from scones.cli import (
    data,
    deploy,
    model,
    monitor,
    registry,
    review,
    service,
    serving,
    workflow,
)
from scones.cli.options import user_message
from scones.cli.render import console, out
from scones.errors import SconesError

app = typer.Typer(
    name="scones",
    help="Scones Unlimited: classify a driver's vehicle photo (bicycle or motorcycle) and "
    "route only confident answers. Stage data, train, serve, run the workflow, monitor.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Scones Unlimited: classify a driver's vehicle photo and route confident answers."""


@app.command()
def version() -> None:
    """Print the installed version of scones."""
    out.print(__version__)


# The command table: top-level commands, then the groups, in `scones --help` order.
app.command()(data.stage)
app.command()(model.train)
app.command()(model.evaluate)
app.command()(review.compare)
app.command()(serving.serve)
app.command()(serving.invoke)
app.command("run")(workflow.run_workflow)
app.command()(monitor.monitor)
app.command()(monitor.dashboard)
app.command()(service.demo)
app.command()(workflow.watch)
app.command()(service.up)
app.add_typer(registry.models_app, name="models")
app.add_typer(workflow.functions_app, name="functions")
app.add_typer(workflow.executions_app, name="executions")
app.add_typer(review.review_app, name="review")
app.add_typer(deploy.deploy_app, name="deploy")
app.add_typer(deploy.destroy_app, name="destroy")


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app()  # standalone: click reports usage errors itself (exit 2)
    except SconesError as exc:
        # The message is the user's data (keys, paths): print it verbatim, never as markup.
        console.print("error:", style="bold red", end=" ")
        console.print(user_message(exc), highlight=False, soft_wrap=True, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("aborted")
        sys.exit(130)
