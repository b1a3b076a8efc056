"""The `scones` command: a thin layer of typer commands over the stage packages.

Heavy imports (torch, onnxruntime, boto3) happen inside commands, so `scones --help` is fast.
Every command's help text is its documentation; tests fail when one lacks it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from scones import __version__
from scones.errors import SconesError, UsageError
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
    str | None,
    typer.Option(
        "--store",
        help="Object store URI (folder, file:///abs, s3://bucket/prefix). "
        "Default: SCONES_STORE or ./.scones/store.",
    ),
]


def settings() -> Settings:
    return get_settings()


def store_uri(store: str | None) -> str:
    return store or settings().store


def open_configured_store(store: str | None):
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


@app.command()
def stage(
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="The CIFAR-100 python archive URL (MD5-verified download), a local archive "
            "of that format, or an already-staged folder or store prefix to import. "
            "Default: SCONES_SOURCE or the official archive.",
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Comma-separated CIFAR-100 fine label names; a class's label is its "
            "position here. Default: SCONES_CLASSES or bicycle,motorcycle.",
        ),
    ] = None,
    store: StoreOption = None,
    prefix: Annotated[
        str,
        typer.Option("--prefix", help="Key prefix in the store for the layout (default: root)."),
    ] = "",
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction", help="Share of each class carved out of train as validation."
        ),
    ] = 0.1,
    test_fraction: Annotated[
        float,
        typer.Option(
            "--test-fraction",
            show_default=False,
            help="Share of each class carved out as test, only when an imported layout has no "
            "test.lst (default 1/6, CIFAR-100's own ratio).",
        ),
    ] = 1 / 6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stratified splits.")] = 0,
    md5: Annotated[
        str | None,
        typer.Option(
            "--md5",
            help="Expected MD5 of the archive (known for the official URL; required for other "
            "URLs; verified for a local archive when given).",
        ),
    ] = None,
) -> None:
    """Stage CIFAR-100 classes into the store in SageMaker's image-classification layout."""
    from rich.progress import Progress
    from rich.table import Table

    from scones.data.stage import stage as stage_data

    config = settings()
    target = open_configured_store(store)
    with Progress(console=console, transient=True) as progress:
        report = stage_data(
            source or config.source,
            target,
            classes=(classes or config.classes).split(","),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            md5=md5,
            cache_dir=config.cache_dir,
            prefix=prefix,
            progress=progress,
            s3_endpoint_url=config.s3_endpoint_url,
        )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    where = target.uri_for(report.prefix) if report.prefix else target.uri
    table = Table(title=f"staged into {where}")
    table.add_column("split")
    for name in report.class_names:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for split, counts in report.counts.items():
        cells = [str(counts[name]) for name in report.class_names]
        table.add_row(split, *cells, str(report.total(split)))
    out.print(table)
    console.print(f"done in {report.seconds:.1f} s", highlight=False)


# --- train / evaluate / models (scones.model) ------------------------------------------


def _print_epoch(progress, task, report) -> None:
    """One epoch on the progress bar (``*`` marks the checkpoint kept so far)."""
    marker = " *" if report.best else ""
    member = f"member {report.member + 1}/{report.members} " if report.members > 1 else ""
    line = (
        f"{member}epoch {report.epoch}/{report.epochs} loss {report.train_loss:.3f} "
        f"val acc {report.val_accuracy:.3f} val loss {report.val_loss:.3f} "
        f"{report.seconds:.1f}s{marker}"
    )
    progress.update(task, advance=1, description=line)
    if not progress.console.is_terminal:  # logs (CI, containers) get every epoch, not a bar
        progress.console.print(line, highlight=False)


@app.command()
def train(
    store: StoreOption = None,
    prefix: Annotated[
        str, typer.Option("--prefix", help="Key prefix of the staged layout in the store.")
    ] = "",
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="JSON or TOML file of hyperparameters (the option names below, with "
            "underscores); flags given here win.",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", help="Training epochs of each ensemble member (default 34)."),
    ] = None,
    members: Annotated[
        int | None,
        typer.Option(
            "--members", help="Networks in the ensemble, logits averaged in one ONNX graph (3)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per step (default 64).")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate, SGD-Nesterov (0.1).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="L2 weight decay (5e-4).")
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option("--label-smoothing", help="Label smoothing (0.2).")
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", help="Channels of the first stage (24).")
    ] = None,
    cutout: Annotated[
        int | None, typer.Option("--cutout", help="Cutout square side, 0 disables (8).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed; a CPU run repeats exactly (0).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto (CUDA when present), cpu, cuda:N.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: all cores).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name in the registry (default SCONES_MODEL_NAME)."),
    ] = None,
    promote_it: Annotated[
        bool, typer.Option("--promote", help="Point the production alias at the new version.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Also keep the extracted model folder here."),
    ] = None,
) -> None:
    """Train the classifier on a staged layout, then register (and optionally promote) it."""
    import shutil
    import tempfile

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from scones.model.registry import promote, register
    from scones.model.train import TrainConfig, load_config, make_config, train_model

    values = load_config(config_file) if config_file else {}
    flags = {
        "epochs": epochs,
        "members": members,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "width": width,
        "cutout": cutout,
        "seed": seed,
        "device": device,
        "threads": threads,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    config: TrainConfig = make_config(values)
    model_name = name or settings().model_name
    target = open_configured_store(store)
    with tempfile.TemporaryDirectory(prefix="scones-train-") as tmp:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("loading data", total=config.epochs * config.members)
            trained = train_model(
                target,
                config,
                Path(tmp) / "model",
                name=model_name,
                prefix=prefix,
                on_epoch=lambda report: _print_epoch(progress, task, report),
            )
        registered = register(target, trained.model_dir, model_name)
        if output is not None:
            shutil.copytree(trained.model_dir, output, dirs_exist_ok=True)
    metrics = trained.metrics
    out.print(
        f"registered {model_name} version {registered.version}: {registered.uri}\n"
        f"validation accuracy {metrics['accuracy']:.4f} (n={metrics['n']}), "
        f"temperature {trained.card.temperature:.3f}, ECE {metrics['ece']:.4f}, "
        f"best epoch {trained.card.training['best_epoch']}, "
        f"{trained.card.training['seconds']:.0f} s on {trained.card.training['device_used']}",
        highlight=False,
    )
    if promote_it:
        previous = promote(target, model_name, registered.version)
        out.print(f"promoted version {registered.version} to production (was {previous})")


def _risk_coverage_table(result: dict):
    from rich.table import Table

    table = Table(title="risk-coverage (top probability >= threshold)")
    for column in ("threshold", "coverage", "selective accuracy", "images"):
        table.add_column(column, justify="right")
    for row in result["risk_coverage"]:
        accuracy = row["selective_accuracy"]
        table.add_row(
            f"{row['threshold']:.2f}",
            f"{row['coverage']:.3f}",
            "-" if accuracy is None else f"{accuracy:.4f}",
            str(row["n_covered"]),
        )
    return table


@app.command()
def evaluate(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model REF: a version (3), an alias (production), a store URI of a "
            "model.tar.gz, or a local model.tar.gz or extracted folder.",
        ),
    ] = "production",
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Staged layout to evaluate: a folder or store URI/prefix holding <split>.lst "
            "and the images (default: the store). Without --store, a registry found here "
            "resolves --model.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which .lst to evaluate.")] = "test",
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Report coverage and accuracy at this confidence (default SCONES_THRESHOLD).",
        ),
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            "--target-precision", help="Selective accuracy the recommended threshold must reach."
        ),
    ] = 0.99,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Evaluate a model on a staged split: accuracy, calibration and risk-coverage."""
    import json

    from rich.table import Table

    from scones.model.evaluate import evaluate_model
    from scones.model.registry import has_registry, resolve_model
    from scones.store import open_store

    conf = settings()
    registry_store = open_configured_store(store)
    data_store = open_store(data, s3_endpoint_url=conf.s3_endpoint_url) if data else registry_store
    if store is None and data and has_registry(data_store, conf.model_name):
        # `scones train --store S` registers into S; evaluating S needs no second --store S.
        registry_store = data_store
    model_dir = resolve_model(model, store=registry_store, cache_dir=conf.cache_dir)
    result = evaluate_model(
        model_dir,
        data_store,
        split=split,
        threshold=conf.threshold if threshold is None else threshold,
        target_precision=target_precision,
    )
    if json_output:
        typer.echo(json.dumps(result))
        return
    out.print(
        f"{result['model']['name']} v{result['model']['version']} on {split} of "
        f"{data_store.uri}: accuracy {result['accuracy']:.4f} (n={result['n']}), "
        f"log loss {result['log_loss']:.4f}, ECE {result['ece']:.4f}",
        highlight=False,
    )
    per_class = Table(title="per class")
    for column in ("class", "precision", "recall", "support"):
        per_class.add_column(column, justify="right")
    for class_name, row in result["per_class"].items():
        per_class.add_row(
            class_name,
            "-" if row["precision"] is None else f"{row['precision']:.4f}",
            "-" if row["recall"] is None else f"{row['recall']:.4f}",
            str(row["support"]),
        )
    out.print(per_class)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for class_name in result["class_names"]:
        confusion.add_column(class_name, justify="right")
    for class_name, row in zip(result["class_names"], result["confusion_matrix"], strict=True):
        confusion.add_row(class_name, *(str(v) for v in row))
    out.print(confusion)
    out.print(_risk_coverage_table(result))
    at = result.get("at_threshold")
    if at:
        accuracy = at["selective_accuracy"]
        out.print(
            f"at threshold {at['threshold']:.2f}: coverage {at['coverage']:.3f}, selective "
            f"accuracy {'-' if accuracy is None else f'{accuracy:.4f}'}",
            highlight=False,
        )
    recommended = result["recommended_threshold"]
    out.print(
        f"recommended threshold for {target_precision:.2%} selective accuracy: "
        + (
            "none reaches it"
            if recommended is None
            else f"{recommended:.4f} (coverage {result['coverage_at_recommended']:.3f})"
        ),
        highlight=False,
    )


models_app = typer.Typer(
    help="The model registry in the store: list versions, show one, promote one.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

ModelNameOption = Annotated[
    str | None,
    typer.Option("--name", help="Model name in the registry (default SCONES_MODEL_NAME)."),
]


@models_app.command("list")
def models_list(
    name: ModelNameOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON Lines.")] = False,
    store: StoreOption = None,
) -> None:
    """List the registered versions of a model, with their aliases."""
    import json

    from rich.table import Table

    from scones.model.registry import list_versions

    model_name = name or settings().model_name
    versions = list_versions(open_configured_store(store), model_name)
    if json_output:
        for v in versions:
            typer.echo(
                json.dumps(
                    {
                        "name": v.name,
                        "version": v.version,
                        "uri": v.uri,
                        "size": v.size,
                        "registered_at": v.registered_at.isoformat(),
                        "aliases": list(v.aliases),
                    }
                )
            )
        return
    table = Table(title=f"model {model_name}")
    for column in ("version", "aliases", "registered", "size", "uri"):
        table.add_column(column)
    for v in versions:
        table.add_row(
            str(v.version),
            ",".join(v.aliases),
            v.registered_at.isoformat(timespec="seconds"),
            f"{v.size / 1e6:.1f} MB",
            v.uri,
        )
    out.print(table)


@models_app.command("show")
def models_show(
    ref: Annotated[
        str, typer.Argument(help="Model REF: version, alias, store URI or local path.")
    ] = "production",
    name: ModelNameOption = None,
    store: StoreOption = None,
) -> None:
    """Print a model's model.json (classes, preprocessing, temperature, metrics, ...)."""
    from scones.model.registry import describe, resolve_model

    model_dir = resolve_model(
        ref, store=open_configured_store(store), cache_dir=settings().cache_dir, name=name
    )
    card = describe(model_dir)
    typer.echo(card.model_dump_json(indent=2))


@models_app.command("promote")
def models_promote(
    version: Annotated[int, typer.Argument(help="The version to promote.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to point at it.")] = "production",
    name: ModelNameOption = None,
    store: StoreOption = None,
) -> None:
    """Point an alias (production by default) at a registered version."""
    from scones.model.registry import promote

    model_name = name or settings().model_name
    previous = promote(open_configured_store(store), model_name, version, alias)
    out.print(f"{model_name}: {alias} -> version {version} (was {previous})", highlight=False)


# --- serve / invoke (scones.serving) ---------------------------------------------------


@app.command()
def serve(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Model REF: a version (3), an alias (production), a store URI of a "
            "model.tar.gz, or a local model.tar.gz or extracted folder.",
        ),
    ] = "production",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(help="TCP port (default 8080); SAGEMAKER_BIND_TO_PORT wins when set."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes, each with its own model and batcher.")
    ] = 1,
    endpoint_name: Annotated[
        str | None,
        typer.Option(help="Endpoint name, used in capture paths (default SCONES_ENDPOINT_NAME)."),
    ] = None,
    variant: Annotated[str, typer.Option(help="Production variant name.")] = "AllTraffic",
    max_batch_size: Annotated[
        int, typer.Option(help="Most images per ONNX Runtime call (micro-batching).")
    ] = 32,
    max_batch_delay_ms: Annotated[
        float,
        typer.Option(help="Longest a request waits for others to batch with, milliseconds."),
    ] = 2.0,
    intra_op_threads: Annotated[
        int,
        typer.Option(
            help="ONNX Runtime threads per inference call (0: auto, one per CPU but one)."
        ),
    ] = 0,
    capture_uri: Annotated[
        str | None,
        typer.Option(help="Data capture store URI or prefix (default <store>/data_capture)."),
    ] = None,
    capture_sampling: Annotated[
        float, typer.Option(help="Percentage of requests captured, 0 to 100.")
    ] = 100.0,
    capture_options: Annotated[
        str, typer.Option(help="What to capture: Input, Output or Input,Output.")
    ] = "Input,Output",
    no_capture: Annotated[
        bool, typer.Option("--no-capture", help="Turn data capture off.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Log level: debug, info, warning, error.")
    ] = "info",
    store: StoreOption = None,
) -> None:
    """Serve a model as a SageMaker-style endpoint (/ping, /invocations) until SIGTERM."""
    from scones.serving.server import default_capture_uri, serve_model

    conf = settings()
    serve_model(
        model,
        store_uri=store_uri(store),
        cache_dir=conf.cache_dir,
        host=host,
        port=port,
        workers=workers,
        capture=not no_capture,
        log_level=log_level,
        endpoint_name=endpoint_name or conf.endpoint_name,
        variant=variant,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        intra_op_threads=intra_op_threads,
        capture_uri=default_capture_uri(capture_uri, store),
        capture_sampling=capture_sampling,
        capture_options=capture_options,
        s3_endpoint_url=conf.s3_endpoint_url,
    )


@app.command()
def invoke(
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG or JPEG) to classify.")],
    endpoint: Annotated[
        str | None,
        typer.Option(help="Endpoint URL (default SCONES_ENDPOINT_URL, http://127.0.0.1:8080)."),
    ] = None,
    custom_attributes: Annotated[
        str | None,
        typer.Option(help="Sent as X-Amzn-SageMaker-Custom-Attributes."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per image.")
    ] = False,
) -> None:
    """Send images to an endpoint; print the class and confidence of each."""
    import json

    from scones.serving.invoke import invoke_images

    answers = invoke_images(
        endpoint or settings().endpoint_url, images, custom_attributes=custom_attributes
    )
    # Plain echo, not rich: tab-separated lines stay machine-readable.
    for answer in answers:
        if json_output:
            record = {
                "image": str(answer.path),
                "class": answer.class_name,
                "confidence": answer.confidence,
                "probabilities": answer.probabilities,
            }
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{answer.path}\t{answer.class_name}\t{answer.confidence:.4f}")


# --- functions / run / executions (scones.functions, scones.workflow) ------------------

functions_app = typer.Typer(
    help="The workflow's AWS Lambda functions (serialize, classify, filter).",
    no_args_is_help=True,
)
app.add_typer(functions_app, name="functions")
executions_app = typer.Typer(
    help="Executions of the workflow state machines, from the executions database.",
    no_args_is_help=True,
)
app.add_typer(executions_app, name="executions")


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


@app.command("run")
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
    from scones.workflow import runs
    from scones.workflow.executions import ExecutionStore

    conf = settings()
    if bool(keys) == (random_count is not None):
        raise runs.UsageError("give --key (one or more) or --random N")
    labels: dict[str, str | None] = {}
    if random_count is not None:
        picked = runs.random_test_keys(
            open_configured_store(store), random_count, split=split, seed=seed
        )
        keys = [key for key, _ in picked]
        labels = dict(picked)
    url = endpoint_url or conf.endpoint_url
    limit = conf.threshold if threshold is None else threshold
    runs.configure_local_functions(
        endpoint_url=url,
        threshold=limit,
        bucket_store=None
        if bucket and store is None
        else (bucket or runs.DEFAULT_BUCKET, store_uri(store)),
    )
    runs.check_endpoint(url)
    with ExecutionStore(conf.db) as db:
        if use_map:
            record = runs.run_map_execution(db, bucket or runs.DEFAULT_BUCKET, keys, name=name)
            outcomes = runs.map_outcomes(record, class_names=runs.endpoint_class_names(url))
            console.print(
                f"{record.execution_id}: {record.status}", highlight=False, soft_wrap=True
            )
            if record.status != "SUCCEEDED":
                raise runs.WorkflowFailedError(
                    f"execution {record.execution_id} {record.status}: {record.error}: "
                    f"{runs.lambda_message(record.cause)}"
                )
        else:
            records = runs.run_single_executions(
                db, bucket or runs.DEFAULT_BUCKET, keys, concurrency=concurrency, name=name
            )
            outcomes = [runs.outcome_of(record) for record in records]
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
    if not all(outcome.routed for outcome in outcomes):
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
            row = {
                "execution_id": record.execution_id,
                "name": record.name,
                "state_machine": record.state_machine,
                "status": record.status,
                "error": record.error,
                "started_at": record.started_at.isoformat(),
                "stopped_at": record.stopped_at.isoformat() if record.stopped_at else None,
            }
            typer.echo(json.dumps(row))
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
    view = {
        "execution_id": record.execution_id,
        "name": record.name,
        "state_machine": record.state_machine,
        "status": record.status,
        "started_at": record.started_at.isoformat(),
        "stopped_at": record.stopped_at.isoformat() if record.stopped_at else None,
        "input": record.input,
        "output": record.output,
        "error": record.error,
        "cause": record.cause,
        "events": len(record.history),
    }
    typer.echo(json.dumps(view, indent=2))


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
        details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
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


# --- monitor / dashboard (scones.monitor) ----------------------------------------------

CaptureUriOption = Annotated[
    str | None,
    typer.Option(
        "--capture-uri",
        help="Data capture prefix (folder, file:// or s3:// URI). "
        "Default: SCONES_CAPTURE_URI or <store>/data_capture.",
    ),
]
EndpointNameOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-name",
        help="Endpoint whose capture to read. Default: SCONES_ENDPOINT_NAME or scones-endpoint.",
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Confidence a prediction needs to pass. Default: SCONES_THRESHOLD or 0.93.",
    ),
]
MonitorModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model whose baseline.json the traffic is compared with: version, alias, store "
        "URI or local path. Default: production (drift skipped when it cannot be resolved).",
    ),
]


@app.command()
def monitor(
    capture_uri: CaptureUriOption = None,
    endpoint_name: EndpointNameOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only records at or after this time: ISO 8601 (UTC if no zone) or an "
            "age such as 30m, 24h, 7d.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only records at or before this time (as --since)."),
    ] = None,
    threshold: ThresholdOption = None,
    model: MonitorModelOption = None,
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for report.html, confidence.png, summary.json and "
            "constraint_violations.json.",
        ),
    ] = Path("monitor-report"),
    psi_threshold: Annotated[
        float,
        typer.Option(
            "--psi-threshold",
            help="Population stability index above which the class "
            "mix or confidence histogram is a violation ...",
        ),
    ] = 0.2,
    chi2_p_value: Annotated[
        float,
        typer.Option(
            "--chi2-p-value",
            help="... when a chi-square test of the binned counts also gives a p-value below this.",
        ),
    ] = 0.01,
    ks_p_value: Annotated[
        float,
        typer.Option(
            "--ks-p-value",
            help="KS test of an image statistic: a violation needs a p-value below this ...",
        ),
    ] = 0.01,
    ks_statistic: Annotated[
        float,
        typer.Option("--ks-statistic", help="... and a KS distance (max CDF gap) above this."),
    ] = 0.1,
    min_records: Annotated[
        int,
        typer.Option("--min-records", help="Drift tests need at least this many live records."),
    ] = 30,
    max_under_threshold_share: Annotated[
        float | None,
        typer.Option(
            "--max-under-threshold-share",
            help="Also a violation when more than this "
            "share of predictions is under the threshold (off by default).",
        ),
    ] = None,
    sample_size: Annotated[
        int,
        typer.Option(
            "--sample-size",
            help="Reservoir sample of per-image statistics kept for "
            "the KS tests (memory stays bounded whatever the traffic).",
        ),
    ] = 10_000,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Processes reading the capture in parallel, used when "
            "it holds over 256 MB. Default: the CPU count, at most 4.",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Report on captured traffic: volume, confidence, class mix, image statistics and drift.

    Exit code 0 when within bounds, 3 when any constraint is violated.
    """
    from scones.monitor.drift import DriftThresholds
    from scones.monitor.report import monitor_report
    from scones.monitor.runner import MonitorOptions, parse_time_flag

    config = settings()
    import os

    if min_records < 1 or sample_size < 1 or (workers is not None and workers < 1):
        from scones.errors import UsageError

        raise UsageError(
            f"--min-records {min_records}, --sample-size {sample_size} and --workers "
            f"{workers} must be at least 1"
        )
    options = MonitorOptions(
        capture_uri=capture_uri or config.capture_uri,
        endpoint_name=endpoint_name or config.endpoint_name,
        since=parse_time_flag("--since", since),
        until=parse_time_flag("--until", until),
        threshold=config.threshold if threshold is None else threshold,
        model_ref=model,
        store_uri=store_uri(store),
        s3_endpoint_url=config.s3_endpoint_url,
        cache_dir=config.cache_dir,
        thresholds=DriftThresholds(
            psi=psi_threshold,
            chi2_p_value=chi2_p_value,
            ks_p_value=ks_p_value,
            ks_statistic=ks_statistic,
            min_records=min_records,
            max_under_threshold_share=max_under_threshold_share,
        ),
        sample_size=sample_size,
        workers=workers or min(os.cpu_count() or 1, 4),
    )
    result = monitor_report(options, out_dir)
    summary = result.summary
    records = summary["records"]
    drift = summary["drift"]
    if summary.get("message"):
        console.print(summary["message"], highlight=False, soft_wrap=True)
    if drift["skipped_reason"]:
        console.print(drift["skipped_reason"], highlight=False, soft_wrap=True)
    share = records["under_threshold_share"]
    out.print(
        f"{records['total']} records, {records['with_predictions']} predictions, "
        f"{records['under_threshold']} under {summary['threshold']}"
        + (f" ({share:.1%})" if share is not None else "")
        + f"; {records['unknown_content_type']} unknown content type, "
        f"{records['undecodable_images']} undecodable, "
        f"{summary['reader']['malformed_lines']} malformed lines",
        highlight=False,
        soft_wrap=True,
    )
    for violation in result.violations["violations"]:
        out.print(
            f"VIOLATION {violation['feature_name']} ({violation['constraint_check_type']}): "
            f"{violation['description']}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"drift: {drift['status']}; report in {out_dir}", highlight=False, soft_wrap=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def dashboard(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8090,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (0.0.0.0 exposes it to the network).")
    ] = "127.0.0.1",
    capture_uri: CaptureUriOption = None,
    endpoint_name: EndpointNameOption = None,
    threshold: ThresholdOption = None,
    model: MonitorModelOption = None,
    window: Annotated[
        str,
        typer.Option("--window", help="Traffic shown: the last 30m, 24h, 7d ...; 'all' for all."),
    ] = "24h",
    refresh: Annotated[
        float, typer.Option("--refresh", help="Seconds between the page's refreshes.")
    ] = 5.0,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="Executions database. Default: SCONES_DB or <home>/scones.db."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Serve a live page: executions, confidence over time, class mix, drift, failed images."""
    from scones.errors import UsageError
    from scones.monitor.dashboard import DashboardConfig, serve_dashboard
    from scones.monitor.runner import MonitorOptions, parse_age

    config = settings()
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is not a TCP port (1-65535)")
    if refresh < 0.5:
        raise UsageError(f"--refresh {refresh} is too short: at least 0.5 seconds")
    span = None if window == "all" else parse_age(window)
    if window != "all" and not span:
        raise UsageError(f"--window {window!r} is not an age such as 30m, 24h, 7d, or 'all'")
    options = MonitorOptions(
        capture_uri=capture_uri or config.capture_uri,
        endpoint_name=endpoint_name or config.endpoint_name,
        threshold=config.threshold if threshold is None else threshold,
        model_ref=model,
        store_uri=store_uri(store),
        s3_endpoint_url=config.s3_endpoint_url,
        cache_dir=config.cache_dir,
    )
    dashboard_config = DashboardConfig(
        monitor=options, db_path=db or config.db, window=span, refresh_seconds=refresh
    )
    serve_dashboard(
        dashboard_config,
        host=host,
        port=port,
        announce=lambda line: console.print(line, highlight=False, soft_wrap=True),
    )


# --- demo / watch / up -----------------------------------------------------------------


@app.command()
def demo(
    source: Annotated[
        str | None,
        typer.Option(
            help="Data to stage: the CIFAR-100 archive URL (default), a local archive, or a "
            "staged folder such as ../shared/data/cifar100-vehicles. Default: SCONES_SOURCE."
        ),
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Train for a few epochs only.")] = False,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (overrides the default and --fast).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the splits and training.")] = 0,
    concurrency: Annotated[int, typer.Option(help="Workflow executions at once.")] = 8,
    ood_images: Annotated[
        int, typer.Option(help="Out-of-distribution images (noise, solid colours) to send.")
    ] = 6,
) -> None:
    """Run the main job end to end: stage, train, evaluate, register, serve, workflow, monitor.

    Everything uses the embedded defaults (state under ./.scones); the endpoint runs on a
    free port with data capture and is stopped at the end. Prints a summary.
    """
    from rich.table import Table

    from scones.demo import DemoOptions, run_demo

    conf = settings()
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if ood_images < 0:
        raise UsageError(f"--ood-images must be 0 or more, got {ood_images}")
    options = DemoOptions(
        source=source or conf.source,
        fast=fast,
        epochs=epochs,
        seed=seed,
        concurrency=concurrency,
        ood_images=ood_images,
    )
    started = time.monotonic()
    summary = run_demo(options, conf, console)
    table = Table(title="scones demo", show_header=False)
    table.add_row("staged", ", ".join(f"{k} {v}" for k, v in summary.stage_counts.items()))
    table.add_row("model", f"{conf.model_name} v{summary.model_version} (production)")
    table.add_row("validation accuracy", f"{summary.validation_accuracy:.3f}")
    table.add_row("test accuracy", f"{summary.test_accuracy:.3f} on {summary.test_images} images")
    table.add_row(
        "executions",
        f"{summary.passed} passed, {summary.failed} failed (threshold {conf.threshold})",
    )
    table.add_row("failed images", str(summary.failed_images_dir))
    table.add_row(
        "monitoring report",
        f"{summary.report_dir}/report.html ({summary.drift_violations} drift violations)",
    )
    table.add_row("executions list", "scones executions list --status FAILED")
    table.add_row("wall time", f"{time.monotonic() - started:.0f} s")
    out.print(table)


def _serve_until_signalled(watcher, children=()) -> None:
    """Run ``watcher`` until SIGTERM/SIGINT, then stop it and ``children`` together."""
    import signal
    import threading

    stopped = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stopped.set()
        watcher.stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        watcher.run()  # returns after stop(), once running executions have finished
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            child.stop()


@app.command()
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
    _serve_until_signalled(watcher)
    console.print(f"stopped; objects by outcome: {watcher.seen.counts()}", highlight=False)


@app.command()
def up(
    model: Annotated[
        str, typer.Option(help="Model to serve (version, alias, URI or path).")
    ] = "production",
    port: Annotated[int, typer.Option(help="Endpoint port.")] = 8080,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port (0: no dashboard).")] = 8090,
    host: Annotated[
        str, typer.Option(help="Address the endpoint and dashboard bind to.")
    ] = "127.0.0.1",
    prefix: Annotated[str, typer.Option(help="Key prefix the watcher watches.")] = "incoming/",
    concurrency: Annotated[int, typer.Option(help="Most executions running at once.")] = 4,
    store: StoreOption = None,
) -> None:
    """Run the service: endpoint, watcher on incoming/ and dashboard, stopping together.

    Drop an image under the prefix and it is classified within a second; SIGTERM stops
    all three (running executions finish first).
    """
    from scones.service import ChildProcess
    from scones.workflow.watch import watch_store

    conf = settings()
    uri = store_uri(store)
    endpoint_url = f"http://{host}:{port}"
    children = [
        ChildProcess.scones(
            "endpoint",
            ["serve", "--model", model, "--host", host, "--port", str(port), "--store", uri],
            ready_url=endpoint_url + "/ping",
        )
    ]
    if dashboard_port:
        children.append(
            ChildProcess.scones(
                "dashboard",
                ["dashboard", "--host", host, "--port", str(dashboard_port), "--store", uri],
                ready_url=f"http://{host}:{dashboard_port}/",
            )
        )
    try:
        for child in children:
            child.start()
            console.print(f"{child.name}: {child.ready_url}", highlight=False)
        watcher = watch_store(
            uri,
            conf.db,
            prefix=prefix,
            endpoint_url=endpoint_url,
            threshold=conf.threshold,
            max_concurrency=concurrency,
            poll_seconds=0.5,
            s3_endpoint_url=conf.s3_endpoint_url,
        )
        console.print(f"watching {watcher.store.uri_for(prefix)}", highlight=False)
        _serve_until_signalled(watcher, children)
    finally:
        for child in children:
            child.stop()


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app()  # standalone: click reports usage errors itself (exit 2)
    except SconesError as exc:
        # The message is the user's data (keys, paths): print it verbatim, never as markup.
        console.print("error:", style="bold red", end=" ")
        console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("aborted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
