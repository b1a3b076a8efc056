"""`scones functions package`, `run`, `executions ...` and `watch` (scones.workflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from scones.cli.options import StoreOption, settings, store_uri
from scones.cli.render import console, out
from scones.errors import UsageError

functions_app = typer.Typer(
    help="The workflow's AWS Lambda functions (serialize, classify, filter).",
    no_args_is_help=True,
)
executions_app = typer.Typer(
    help="Executions of the workflow state machines, from the executions database.",
    no_args_is_help=True,
)


@functions_app.command("package")
def functions_package(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write one <function>.zip per function into.")
    ],
) -> None:
    """Write one self-contained Lambda zip per function (handler <module>.handler)."""
    from rich.table import Table

    from scones.functions.packaging import package_functions

    table = Table("function", "handler", "zip", "bytes")
    for package in package_functions(out_dir):
        table.add_row(package.function_name, package.handler, str(package.path), str(package.size))
    out.print(table)


def _print_outcomes(
    outcomes: list, title: str, labels: dict[str, str | None], threshold: float
) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("image", overflow="fold")
    table.add_column("status")
    table.add_column("class")
    table.add_column("confidence", justify="right")
    show_labels = any(labels.values())
    if show_labels:
        table.add_column("true class")
    table.add_column("why not routed", overflow="fold")
    for outcome in outcomes:
        style = "green" if outcome.routed else "red"
        confidence = "" if outcome.confidence is None else f"{outcome.confidence:.4f}"
        if outcome.routed:
            why = ""
        elif outcome.status == "LOW_CONFIDENCE":
            why = f"under the threshold {threshold:g}"
        else:
            why = f"{outcome.error}: {outcome.message}"
        cells = [
            outcome.s3_key,
            f"[{style}]{outcome.status}[/]",
            outcome.top_class or "",
            confidence,
        ]
        if show_labels:
            cells.append(labels.get(outcome.s3_key) or "")
        table.add_row(*cells, why)
    out.print(table)


def run_workflow(
    keys: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            help="Image key in the bucket, e.g. test/bicycle_s_000035.png; repeat for several.",
        ),
    ] = None,
    random_count: Annotated[
        int | None,
        typer.Option("--random", help="Run N random images of the staged test split."),
    ] = None,
    use_map: Annotated[
        bool,
        typer.Option("--map", help="Classify all keys in one execution of the Map state machine."),
    ] = False,
    bucket: Annotated[
        str | None,
        typer.Option(help="Bucket the keys are in (default: the configured store)."),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="Endpoint the classify function calls (default SCONES_ENDPOINT_URL)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Confidence a prediction needs to be routed (default SCONES_THRESHOLD)."),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Most executions running at once.")] = 16,
    name: Annotated[
        str | None,
        typer.Option(
            help="Execution name (one execution); the same name and input return "
            "the existing execution."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split that --random picks from.")] = "test",
    seed: Annotated[int | None, typer.Option(help="Random seed for --random.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per image instead.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Run the workflow on images: serialize, classify on the endpoint, filter by confidence.

    Exits non-zero when any image is not routed (low confidence or failure).
    """
    from scones.workflow.runs import RunRequest, run_images

    conf = settings()
    request = RunRequest(
        endpoint_url=endpoint_url or conf.endpoint_url,
        threshold=conf.threshold if threshold is None else threshold,
        store_uri=store_uri(store),
        db_path=conf.db,
        keys=keys or [],
        random_count=random_count,
        split=split,
        seed=seed,
        use_map=use_map,
        bucket=bucket,
        bucket_is_store=not (bucket and store is None),
        concurrency=concurrency,
        name=name,
        s3_endpoint_url=conf.s3_endpoint_url,
    )
    result = run_images(
        request, announce=lambda line: console.print(line, highlight=False, soft_wrap=True)
    )
    outcomes, labels, limit = result.outcomes, result.true_classes, result.threshold
    if json_output:
        import dataclasses
        import json

        for outcome in outcomes:
            row = dataclasses.asdict(outcome) | {"true_class": labels.get(outcome.s3_key)}
            typer.echo(json.dumps(row))
    elif len(outcomes) == 1 and not use_map:
        outcome = outcomes[0]
        if outcome.routed:
            out.print(
                f"{outcome.s3_key}\tSUCCEEDED\t{outcome.top_class}\t{outcome.confidence:.4f}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        else:
            out.print(
                f"{outcome.s3_key}\tFAILED\t{outcome.error}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            console.print(
                f"{outcome.error}: {outcome.message}", highlight=False, markup=False, soft_wrap=True
            )
        console.print(
            f"execution: {outcome.execution_id}", highlight=False, markup=False, soft_wrap=True
        )
    else:
        _print_outcomes(outcomes, title=f"{len(outcomes)} images", labels=labels, threshold=limit)
        routed = sum(outcome.routed for outcome in outcomes)
        console.print(f"{routed} of {len(outcomes)} routed", highlight=False)
    if not result.all_routed:
        raise typer.Exit(code=1)


@executions_app.command("list")
def executions_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED."),
    ] = None,
    limit: Annotated[int, typer.Option(help="Most executions to show, newest first.")] = 50,
    since: Annotated[
        str | None,
        typer.Option(help="Only executions started since: ISO 8601 time, or an age (30m, 2h)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per execution.")
    ] = False,
) -> None:
    """List executions, newest first."""
    import json

    from rich.table import Table

    from scones.workflow.executions import ExecutionStore, parse_since

    started_since = parse_since(since) if since else None
    with ExecutionStore(settings().db) as db:
        records = db.list(
            status=status.upper() if status else None, limit=limit, since=started_since
        )
    if json_output:
        for record in records:
            typer.echo(json.dumps(record.to_dict()))
        return
    table = Table("started", "name", "status", "image", "error")
    for record in records:
        image = record.input.get("s3_key", "") if isinstance(record.input, dict) else ""
        if not image and isinstance(record.input, dict):
            image = f"{len(record.input.get('keys') or [])} keys (Map)"
        table.add_row(
            record.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            record.name,
            record.status,
            str(image),
            record.error or "",
        )
    out.print(table)


@executions_app.command("show")
def executions_show(
    execution: Annotated[str, typer.Argument(help="Execution id (ARN) or name.")],
) -> None:
    """Show one execution: status, input, output or error and cause, timestamps."""
    import json

    from scones.workflow.executions import ExecutionStore

    with ExecutionStore(settings().db) as db:
        record = db.find(execution)
    typer.echo(json.dumps(record.to_dict(detail=True), indent=2))


@executions_app.command("history")
def executions_history(
    execution: Annotated[str, typer.Argument(help="Execution id (ARN) or name.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the events as a JSON list.")
    ] = False,
) -> None:
    """Show an execution's event history, as Step Functions records it."""
    import json

    from rich.table import Table

    from scones.workflow.executions import ExecutionStore
    from scones.workflow.runs import lambda_message

    with ExecutionStore(settings().db) as db:
        record = db.find(execution)
    if json_output:
        typer.echo(json.dumps(record.history, indent=2))
        return
    table = Table("id", "type", "state", "detail", title=record.execution_id)
    for event in record.history:
        details: Any = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
        state = details.get("name", "") if isinstance(details, dict) else ""
        detail = ""
        if isinstance(details, dict):
            # Lambda causes are JSON with a stack trace: its message is what people need.
            detail = " ".join(
                f"{key}={lambda_message(details[key]) if key == 'cause' else details[key]}"
                for key in ("error", "cause")
                if details.get(key)
            )
        table.add_row(str(event.get("id", "")), str(event.get("type", "")), state, detail[:300])
    out.print(table)


def watch(
    prefix: Annotated[
        str, typer.Option(help="Key prefix to watch; every new object starts one execution.")
    ] = "incoming/",
    bucket: Annotated[
        str, typer.Option(help="Bucket name the executions' events carry (maps to --store).")
    ] = "scones",
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="Endpoint the classify function calls. Default: SCONES_ENDPOINT_URL."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Routing threshold. Default: SCONES_THRESHOLD.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Most executions running at once.")] = 4,
    poll_seconds: Annotated[
        float, typer.Option(help="Seconds between scans (local stores also get notifications).")
    ] = 1.0,
    store: StoreOption = None,
) -> None:
    """Start one workflow execution for every new object under a prefix (the S3 trigger).

    Objects are remembered in SQLite by key and ETag, so a restart never runs an object
    twice and picks up objects that arrived while it was stopped. Stops on SIGTERM/SIGINT
    after running executions finish.
    """
    from scones.service import run_until_signalled
    from scones.workflow.watch import watch_store

    conf = settings()
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    watcher = watch_store(
        store_uri(store),
        conf.db,
        prefix=prefix,
        bucket=bucket,
        endpoint_url=endpoint_url or conf.endpoint_url,
        threshold=conf.threshold if threshold is None else threshold,
        max_concurrency=concurrency,
        poll_seconds=poll_seconds,
        s3_endpoint_url=conf.s3_endpoint_url,
    )
    console.print(f"watching {watcher.store.uri_for(prefix)} (Ctrl-C to stop)", highlight=False)
    run_until_signalled(watcher)
    console.print(f"stopped; objects by outcome: {watcher.seen.counts()}", highlight=False)
