"""`scones functions package`, `run`, `executions ...` and `watch` (scones.workflow)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from scones.cli.options import StoreOption, routing_threshold, settings, store_uri
from scones.cli.render import Cell, Column, console, print_json_lines, print_rows
from scones.errors import UsageError

if TYPE_CHECKING:
    from scones.workflow.runs import RunResult

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
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per function instead.")
    ] = False,
) -> None:
    """Write one self-contained Lambda zip per function (handler <module>.handler)."""
    from scones.functions.packaging import package_functions

    packages = package_functions(out_dir)
    if json_output:
        print_json_lines(package.to_dict() for package in packages)
        return
    print_rows(
        ["function", "handler", "zip", Column("bytes", "right")],
        [[p.function_name, p.handler, str(p.path), str(p.size)] for p in packages],
    )


def _print_outcomes(result: RunResult) -> None:
    show_labels = any(result.true_classes.values())
    columns: list[Column | str] = ["image", "status", "class", Column("confidence", "right")]
    columns += ["true class"] if show_labels else []
    rows = []
    for outcome in result.outcomes:
        status = Text(outcome.status, style="green" if outcome.routed else "red")
        confidence = "" if outcome.confidence is None else f"{outcome.confidence:.4f}"
        cells: list[Cell] = [outcome.s3_key, status, outcome.top_class or "", confidence]
        if show_labels:
            cells.append(result.true_classes.get(outcome.s3_key) or "")
        rows.append([*cells, outcome.why_not_routed(result.threshold)])
    print_rows([*columns, "why not routed"], rows, title=f"{len(rows)} images")


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
        typer.Option(
            help="Confidence a prediction needs to be routed (default SCONES_THRESHOLD; "
            "SCONES_THRESHOLD=model: the threshold the served model records)."
        ),
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
    on: Annotated[
        str,
        typer.Option(
            "--on",
            help="Where to run: local (this machine) or aws (the state machine that "
            "`scones deploy aws` created; --bucket names its bucket, keys are under --prefix).",
        ),
    ] = "local",
    deployment: Annotated[
        str, typer.Option("--deployment", help="With --on aws: the deployment's --name.")
    ] = "scones",
    prefix: Annotated[
        str, typer.Option("--prefix", help="With --on aws: the deployment's --prefix.")
    ] = "scones/",
    region: Annotated[
        str | None,
        typer.Option("--region", help="With --on aws: its region (default AWS_DEFAULT_REGION)."),
    ] = None,
    aws_endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--aws-endpoint-url", help="With --on aws: one endpoint for every AWS service (moto)."
        ),
    ] = None,
) -> None:
    """Run the workflow on images: serialize, classify on the endpoint, filter by confidence.

    Exits non-zero when any image is not routed (low confidence or failure).
    """
    from scones.cli.review import review_config
    from scones.review.actions import review_hook
    from scones.workflow.runs import RunRequest, run_images

    conf = settings()
    if on not in ("local", "aws"):
        raise UsageError(f"--on {on!r}: use local or aws")
    if on == "aws":
        if not bucket or random_count is not None or use_map:
            raise UsageError("--on aws needs --bucket and --key (no --random or --map)")
        from scones.deploy.aws import default_region
        from scones.deploy.run import AwsRunOptions, run_on_aws

        aws_options = AwsRunOptions(
            bucket=bucket,
            region=region or default_region(),
            keys=tuple(keys or ()),
            name=deployment,
            prefix=prefix,
            execution_name=name,
            endpoint_url=aws_endpoint_url,
            s3_endpoint_url=conf.s3_endpoint_url,
        )
        _render_run(run_on_aws(aws_options), json_output, use_map=False)
        return
    bucket_is_store = not (bucket and store is None)
    endpoint = endpoint_url or conf.endpoint_url
    # Threshold failures become review items as their executions finish.
    images_uri = store_uri(store) if bucket_is_store else f"s3://{bucket}"
    with review_hook(review_config(), images_uri, endpoint) as hook:
        request = RunRequest(
            endpoint_url=endpoint,
            threshold=routing_threshold(threshold, endpoint),
            store_uri=store_uri(store),
            db_path=conf.db,
            keys=keys or [],
            random_count=random_count,
            split=split,
            seed=seed,
            use_map=use_map,
            bucket=bucket,
            bucket_is_store=bucket_is_store,
            concurrency=concurrency,
            name=name,
            s3_endpoint_url=conf.s3_endpoint_url,
            on_finished=hook,
        )
        result = run_images(
            request, announce=lambda line: console.print(line, highlight=False, soft_wrap=True)
        )
    _render_run(result, json_output, use_map)


def _render_run(result: RunResult, json_output: bool, use_map: bool) -> None:
    """The outcome lines of a run, local or on AWS alike; exit 1 unless all were routed."""
    if json_output:
        print_json_lines(result.to_dicts())
    elif len(result.outcomes) == 1 and not use_map:
        outcome = result.outcomes[0]
        if outcome.routed:
            typer.echo(
                f"{outcome.s3_key}\tSUCCEEDED\t{outcome.top_class}\t{outcome.confidence:.4f}"
            )
        else:
            typer.echo(f"{outcome.s3_key}\tFAILED\t{outcome.error}")
            console.print(f"{outcome.error}: {outcome.message}", highlight=False, markup=False)
        console.print(f"execution: {outcome.execution_id}", highlight=False, markup=False)
    else:
        _print_outcomes(result)
        console.print(f"{result.routed_count} of {len(result.outcomes)} routed", highlight=False)
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
        typer.Option(
            help="Only executions started since: ISO 8601 (UTC if no zone) or an age such "
            "as 30m, 24h, 7d, 1w."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per execution.")
    ] = False,
) -> None:
    """List executions, newest first (piped: one tab-separated line each, whole values)."""
    from scones.times import parse_optional_moment, table_time
    from scones.workflow.executions import list_executions

    started_since = parse_optional_moment(since, parameter="since")
    records = list_executions(settings().db, status=status, limit=limit, since=started_since)
    if json_output:
        print_json_lines(record.to_dict() for record in records)
        return
    rows = []
    for record in records:
        top_class, confidence = record.prediction()
        image = record.image_key or f"{record.map_key_count or 0} keys (Map)"
        rows.append(
            [
                table_time(record.started_at),
                record.name,
                record.status,
                image,
                top_class or "",
                "" if confidence is None else f"{confidence:.4f}",
                record.error or "",
            ]
        )
    print_rows(
        ["started", "name", "status", "image", "class", Column("confidence", "right"), "error"],
        rows,
    )


@executions_app.command("show")
def executions_show(
    execution: Annotated[str, typer.Argument(help="Execution id (ARN) or name.")],
    graph: Annotated[
        Path | None,
        typer.Option(help="Also draw its graph, path taken coloured, to this .svg or .png."),
    ] = None,
) -> None:
    """Show one execution: status, input, output or error and cause, timestamps."""
    import json

    from scones.dashboard.console import write_execution_graph
    from scones.workflow.executions import find_execution

    record = find_execution(settings().db, execution)
    if graph is not None:
        written = write_execution_graph(record, graph)
        console.print(f"graph written to {written}", highlight=False, soft_wrap=True)
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

    from scones.workflow.executions import find_execution
    from scones.workflow.runs import history_row

    record = find_execution(settings().db, execution)
    if json_output:
        typer.echo(json.dumps(record.history, indent=2))
        return
    print_rows(
        ["id", "type", "state", Column("detail", max_chars=300)],
        [history_row(event) for event in record.history],
        title=record.execution_id,
    )


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
        float | None,
        typer.Option(
            help="Routing threshold. Default: SCONES_THRESHOLD "
            "(model: the threshold the served model records)."
        ),
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
    from scones.cli.review import review_config
    from scones.review.actions import review_hook
    from scones.service import run_until_signalled
    from scones.workflow.watch import watch_store

    conf = settings()
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    endpoint = endpoint_url or conf.endpoint_url
    with review_hook(review_config(), store_uri(store), endpoint) as hook:
        watcher = watch_store(
            store_uri(store),
            conf.db,
            prefix=prefix,
            bucket=bucket,
            endpoint_url=endpoint,
            threshold=routing_threshold(threshold, endpoint),
            max_concurrency=concurrency,
            poll_seconds=poll_seconds,
            s3_endpoint_url=conf.s3_endpoint_url,
            on_finished=hook,  # threshold failures become review items
        )
        console.print(f"watching {watcher.store.uri_for(prefix)} (Ctrl-C to stop)", highlight=False)
        run_until_signalled(watcher)
    console.print(f"stopped; objects by outcome: {watcher.seen.counts()}", highlight=False)
