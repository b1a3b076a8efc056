"""`scones monitor`, the computing half: read the capture, aggregate, test drift.

:func:`run_monitor` returns a typed :class:`MonitorResult` and writes nothing; the caller
renders it (:mod:`scones.monitor.report` writes the four files, the dashboard serves JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scones.errors import SconesError, UsageError
from scones.model.artifact import ArtifactError, read_baseline, read_card
from scones.model.registry import resolve_model
from scones.monitor.aggregate import MonitorConfig, TrafficAggregator
from scones.monitor.capture_reader import (
    CaptureFile,
    ReadCounters,
    iter_capture_records,
    list_capture_files,
)
from scones.monitor.drift import (
    Baseline,
    BaselineProblem,
    DriftReport,
    DriftThresholds,
    evaluate_drift,
    parse_baseline,
)
from scones.settings import get_settings
from scones.store import open_store

# The exit code a scheduler alerts on: the traffic broke a constraint.
VIOLATION_EXIT_CODE = 3
DEFAULT_MODEL_REF = "production"
# Below this much capture, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 256 * 1024 * 1024


class MonitorError(SconesError):
    """The monitor cannot run as asked (a bad capture URI, an unresolvable --model)."""


@dataclass
class MonitorOptions:
    capture_uri: str
    endpoint_name: str | None
    since: datetime | None = None
    until: datetime | None = None
    threshold: float = 0.93
    model_ref: str | None = None  # None: the default (production), skipped if unresolvable
    store_uri: str | None = None  # where the model registry lives
    s3_endpoint_url: str | None = None
    cache_dir: Path = Path(".scones/cache")
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    sample_size: int = 10_000
    workers: int = 1  # processes reading the capture; used only above parallel_min_bytes
    parallel_min_bytes: int = PARALLEL_MIN_BYTES


@dataclass
class BaselineSource:
    """The model the traffic is compared with, or why there is none."""

    model_dir: Path | None = None
    model_name: str | None = None
    model_version: int | None = None
    class_names: list[str] | None = None
    baseline: Baseline | None = None
    skipped_reason: str | None = None
    reference: str | None = None

    @property
    def label(self) -> str | None:
        """How a report names the model: ``name vN`` once registered, else where it is."""
        if self.model_name is None:
            return self.reference
        if self.model_version is None:
            return f"{self.model_name} (unregistered: {self.model_dir})"
        return f"{self.model_name} v{self.model_version}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "path": str(self.model_dir) if self.model_dir else None,
            "name": self.model_name,
            "version": self.model_version,
            "label": self.label,
            "baseline": self.baseline is not None,
            "baseline_split": self.baseline.split if self.baseline else None,
            "baseline_n": self.baseline.n if self.baseline else None,
            "skipped_reason": self.skipped_reason,
        }


@dataclass
class MonitorResult:
    """Everything one run computed; rendering it is the caller's part."""

    summary: dict[str, Any]
    drift: DriftReport
    aggregator: TrafficAggregator
    baseline: BaselineSource
    written: list[Path] = field(default_factory=list)

    @property
    def violations(self) -> dict[str, Any]:
        """constraint_violations.json: SageMaker Model Monitor's shape."""
        return self.drift.constraint_violations()

    @property
    def exit_code(self) -> int:
        return VIOLATION_EXIT_CODE if self.drift.violated else 0


def resolve_baseline(options: MonitorOptions) -> BaselineSource:
    """The model and baseline.json that ``--model`` names (default: production), resolved
    by the model registry's rules (version, alias, store URI or local path)."""
    explicit = options.model_ref is not None
    reference = options.model_ref if explicit else DEFAULT_MODEL_REF
    assert reference is not None
    try:
        # The registry lives in the store (versions, aliases); paths need no store.
        store = open_store(
            options.store_uri or get_settings().store, s3_endpoint_url=options.s3_endpoint_url
        )
        model_dir = resolve_model(
            reference,
            store=store,
            cache_dir=options.cache_dir,
            s3_endpoint_url=options.s3_endpoint_url,
        )
        card = read_card(model_dir)
    except (SconesError, OSError, ValueError) as exc:
        if explicit:
            raise MonitorError(f"--model {reference!r} cannot be used: {exc}") from None
        return BaselineSource(
            reference=reference,
            skipped_reason=f"drift skipped: no --model given and the default model "
            f"{reference!r} cannot be resolved ({exc})",
        )
    source = BaselineSource(
        model_dir=model_dir,
        model_name=card.name,
        model_version=card.version,
        class_names=list(card.class_names),
        reference=reference,
    )
    try:
        document = read_baseline(model_dir)
    except (ValueError, OSError, ArtifactError) as exc:
        source.skipped_reason = f"drift skipped: {model_dir}/baseline.json is unreadable ({exc})"
        return source
    if document is None:
        source.skipped_reason = (
            f"drift skipped: model {source.label} ({model_dir}) has no "
            "baseline.json (an artifact made before baselines existed)"
        )
        return source
    try:
        source.baseline = parse_baseline(document)
    except BaselineProblem as exc:
        source.skipped_reason = f"baseline.json is unusable: {exc}"
    return source


def _split_by_size(files: list[CaptureFile], parts: int) -> list[list[CaptureFile]]:
    """Contiguous runs of files (in time order) of about equal total size."""
    total = sum(f.size for f in files) or 1
    groups: list[list[CaptureFile]] = [[]]
    filled = 0
    for capture_file in files:
        if filled >= total * len(groups) / parts and len(groups) < parts:
            groups.append([])
        groups[-1].append(capture_file)
        filled += capture_file.size
    return [group for group in groups if group]


def _aggregate_part(
    options: MonitorOptions, files: list[CaptureFile], config: MonitorConfig
) -> tuple[TrafficAggregator, ReadCounters]:
    """One worker process: its run of files, streamed and aggregated."""
    store = open_store(options.capture_uri, s3_endpoint_url=options.s3_endpoint_url)
    counters = ReadCounters()
    aggregator = TrafficAggregator(config)
    aggregator.add_all(
        iter_capture_records(
            store, files, since=options.since, until=options.until, counters=counters
        )
    )
    return aggregator, counters


def _aggregate_in_parallel(
    options: MonitorOptions,
    files: list[CaptureFile],
    config: MonitorConfig,
    counters: ReadCounters,
) -> TrafficAggregator:
    """Workers aggregate contiguous time ranges; their results merge exactly (counts, sums,
    histograms, buckets) or as uniform samples (reservoirs)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    groups = _split_by_size(files, options.workers)
    # spawn: no fork of a process that may hold threads (S3 clients, servers in tests).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(groups), mp_context=context) as pool:
        futures = [
            pool.submit(_aggregate_part, options, group, replace(config, seed=config.seed + 7 * i))
            for i, group in enumerate(groups)
        ]
        results = [future.result() for future in futures]
    aggregator = TrafficAggregator(config)
    for part, part_counters in results:
        aggregator.merge(part)
        counters.merge(part_counters)
    return aggregator


def run_monitor(
    options: MonitorOptions, *, baseline: BaselineSource | None = None
) -> MonitorResult:
    """Read every capture record in the window, aggregate and test drift; writes nothing.

    ``baseline`` skips resolving ``--model`` again (the dashboard resolves it once).
    """
    if not 0.0 <= options.threshold <= 1.0:
        raise UsageError(f"--threshold {options.threshold} is outside 0..1")
    thresholds = options.thresholds
    for flag, p_value in (
        ("--chi2-p-value", thresholds.chi2_p_value),
        ("--ks-p-value", thresholds.ks_p_value),
    ):
        if not 0.0 < p_value <= 1.0:
            raise UsageError(f"{flag} {p_value} is outside 0..1 (a significance level)")
    if options.since and options.until and options.since > options.until:
        raise UsageError(
            f"--since {options.since.isoformat()} is after --until {options.until.isoformat()}"
        )
    if baseline is None:
        baseline = resolve_baseline(options)
    capture_store = open_store(options.capture_uri, s3_endpoint_url=options.s3_endpoint_url)
    counters = ReadCounters()
    files = list_capture_files(
        capture_store,
        options.endpoint_name,
        since=options.since,
        until=options.until,
        counters=counters,
    )
    config = MonitorConfig(
        threshold=options.threshold,
        class_names=tuple(baseline.class_names) if baseline.class_names else None,
        sample_size=options.sample_size,
    )
    total_bytes = sum(f.size for f in files)
    if options.workers > 1 and len(files) > 1 and total_bytes >= options.parallel_min_bytes:
        aggregator = _aggregate_in_parallel(options, files, config, counters)
    else:
        aggregator = TrafficAggregator(config)
        aggregator.add_all(
            iter_capture_records(
                capture_store, files, since=options.since, until=options.until, counters=counters
            )
        )
    drift = evaluate_drift(
        aggregator.live_traffic(),
        baseline.baseline,
        options.thresholds,
        skipped_reason=baseline.skipped_reason,
    )
    if aggregator.records == 0:
        drift = drift.skipped("no traffic in the window")
    summary: dict[str, Any] = {
        "format_version": 1,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "capture": {
            "uri": capture_store.uri,
            "endpoint_name": options.endpoint_name,
            "since": options.since.isoformat() if options.since else None,
            "until": options.until.isoformat() if options.until else None,
        },
        "model": baseline.as_dict(),
        **aggregator.summary(),
        "reader": counters.as_dict(),
        "drift": drift.as_dict(),
    }
    if aggregator.records == 0:
        where = capture_store.uri_for(options.endpoint_name or "")
        summary["message"] = f"no capture records under {where} in the window"
    return MonitorResult(summary, drift, aggregator, baseline)
