"""`scones demo` and `scones up`: the whole system at once (scones.demo, scones.service)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from scones.cli.options import StoreOption, settings, store_uri
from scones.cli.render import console, out
from scones.errors import UsageError


def demo(
    source: Annotated[
        str | None,
        typer.Option(
            help="Data to stage: the CIFAR-100 archive URL (default), a local archive, or a "
            "staged folder such as ../shared/data/cifar100-vehicles. Default: SCONES_SOURCE."
        ),
    ] = None,
    fast: Annotated[
        bool,
        typer.Option("--fast", help="Train for a few epochs, one network instead of the ensemble."),
    ] = False,
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
    interval = summary.test_coverage_interval
    table.add_row(
        "coverage at 99% (test)",
        f"{summary.test_coverage or 0.0:.3f}"
        + (
            ""
            if interval is None
            else f" (95% interval {interval['low']:.2f}-{interval['high']:.2f})"
        ),
    )
    table.add_row(
        "executions",
        f"{summary.passed} passed, {summary.failed} failed (threshold "
        f"{conf.threshold if summary.threshold is None else summary.threshold:g})",
    )
    table.add_row("failed images", str(summary.failed_images_dir))
    table.add_row(
        "monitoring report",
        f"{summary.report_dir}/report.html ({summary.drift_violations} drift violations)",
    )
    table.add_row("executions list", "scones executions list --status FAILED")
    table.add_row("wall time", f"{time.monotonic() - started:.0f} s")
    out.print(table)
    out.print(
        f"{summary.awaiting_review} items await review: run `scones dashboard` and open "
        "http://127.0.0.1:8090/review (or `scones review list`)",
        highlight=False,
        markup=False,
    )


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
    max_restarts: Annotated[
        int,
        typer.Option(
            help="Restarts in a row (backoff 1 s doubling to 30 s) of an endpoint or dashboard "
            "that dies before everything stops with exit code 1."
        ),
    ] = 5,
    store: StoreOption = None,
) -> None:
    """Run the service: endpoint, watcher on incoming/ and dashboard, stopping together.

    Drop an image under the prefix and it is classified within a second; SIGTERM stops
    all three (running executions finish first).

    An endpoint or dashboard that dies is restarted with backoff; logs stay in <home>/logs.
    """
    from scones.service import RestartPolicy, ServiceOptions, run_service

    conf = settings()
    options = ServiceOptions(
        model=model,
        store_uri=store_uri(store),
        db_path=conf.db,
        threshold=conf.threshold,
        threshold_from_model=conf.threshold_from_model,
        host=host,
        port=port,
        dashboard_port=dashboard_port,
        prefix=prefix,
        concurrency=concurrency,
        log_dir=conf.home / "logs",
        restart=RestartPolicy(max_restarts=max_restarts),
        s3_endpoint_url=conf.s3_endpoint_url,
        classes=tuple(conf.class_names),
    )
    run_service(options, announce=lambda line: console.print(line, highlight=False))
