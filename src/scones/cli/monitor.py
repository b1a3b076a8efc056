"""`scones monitor` and `scones dashboard` (scones.monitor)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from scones.cli.options import (
    CaptureUriOption,
    EndpointNameOption,
    MonitorModelOption,
    StoreOption,
    ThresholdOption,
    settings,
    store_uri,
)
from scones.cli.render import console, out
from scones.errors import UsageError


def monitor(
    capture_uri: CaptureUriOption = None,
    endpoint_name: EndpointNameOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only records at or after this time: ISO 8601 (UTC if no zone) or an "
            "age such as 30m, 24h, 7d, 1w.",
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
    from scones.monitor.runner import MonitorOptions
    from scones.times import parse_optional_moment

    config = settings()
    if min_records < 1 or sample_size < 1 or (workers is not None and workers < 1):
        raise UsageError(
            f"--min-records {min_records}, --sample-size {sample_size} and --workers "
            f"{workers} must be at least 1"
        )
    options = MonitorOptions(
        capture_uri=capture_uri or config.capture_uri,
        endpoint_name=endpoint_name or config.endpoint_name,
        since=parse_optional_moment(since, parameter="since"),
        until=parse_optional_moment(until, parameter="until"),
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
    """Serve a live page: executions, confidence over time, class mix, drift, failed images.

    Also the workflow console: /executions, each execution's graph, /state-machines/NAME.
    """
    from scones.dashboard.app import DashboardConfig, serve_dashboard
    from scones.monitor.runner import MonitorOptions
    from scones.times import parse_age

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
