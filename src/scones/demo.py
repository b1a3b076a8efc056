"""`scones demo`: the main job, end to end, on embedded defaults.

Stage -> train -> evaluate -> register and promote -> serve with data capture -> run the
workflow over the test images and a few out-of-distribution images -> monitoring report
-> stop everything -> summary. Every stage reports progress; any failure stops the demo
with the stage named, and the endpoint is stopped on the way out.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from scones.settings import Settings
from scones.store import ObjectStore, open_store

DEMO_BUCKET = "scones"
OOD_PREFIX = "demo/out-of-distribution/"
FAST_EPOCHS = 4  # per ensemble member
FAST_MEMBERS = 1  # --fast: one network (or one tuned tail) instead of the ensemble


@dataclass
class DemoOptions:
    source: str
    fast: bool = False
    epochs: int | None = None
    seed: int = 0
    concurrency: int = 8
    ood_images: int = 6


@dataclass
class DemoSummary:
    stage_counts: dict[str, int] = field(default_factory=dict)
    model_version: int | None = None
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    test_images: int = 0
    recommended_threshold: float | None = None
    # The business number on the test split: share routable at 99 % selective accuracy.
    test_coverage: float | None = None
    test_coverage_interval: dict[str, Any] | None = None
    threshold: float | None = None  # what routing used (SCONES_THRESHOLD, or the model's)
    passed: int = 0
    failed: int = 0
    failed_keys: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    failed_images_dir: Path | None = None
    drift_violations: int = 0
    awaiting_review: int = 0  # review items the threshold failures became
    seconds: dict[str, float] = field(default_factory=dict)


def out_of_distribution_images(count: int, seed: int = 0) -> dict[str, bytes]:
    """Noise and solid colours: images no vehicle classifier should be sure about."""
    rng = np.random.default_rng(seed)
    colours = [(128, 128, 128), (255, 255, 255), (20, 20, 20), (40, 90, 200), (200, 60, 40)]
    images: dict[str, bytes] = {}
    for index in range(count):
        if index % 2 == 0:
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            image, name = Image.fromarray(pixels, "RGB"), f"noise-{index}.png"
        else:
            colour = colours[(index // 2) % len(colours)]
            image, name = Image.new("RGB", (32, 32), colour), f"solid-{index}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images[OOD_PREFIX + name] = buffer.getvalue()
    return images


class _Stages:
    """A rich progress display with one line per stage, timing each."""

    def __init__(self, progress: Progress, summary: DemoSummary) -> None:
        self.progress = progress
        self.summary = summary

    @contextmanager
    def stage(self, name: str, total: float | None = None) -> Iterator[Any]:
        # Every task carries an `info` field so the last column always renders.
        task = self.progress.add_task(name, total=total, info="")
        started = time.monotonic()

        def advance(step: float = 1.0, **fields: Any) -> None:
            self.progress.update(task, advance=step, **fields)

        yield advance
        self.summary.seconds[name] = round(time.monotonic() - started, 1)
        self.progress.update(task, total=total or 1, completed=total or 1)


def run_demo(options: DemoOptions, conf: Settings, console: Console) -> DemoSummary:
    """Run every stage on ``conf``'s store and home; return the numbers for the summary."""
    from scones.service import ChildProcess, free_port

    summary = DemoSummary()
    store = open_store(conf.store, s3_endpoint_url=conf.s3_endpoint_url)
    conf.home.mkdir(parents=True, exist_ok=True)
    progress = Progress(
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )
    with progress:
        stages = _Stages(progress, summary)
        _stage_and_train(options, conf, store, stages, summary)

        port = free_port()
        endpoint_url = f"http://127.0.0.1:{port}"
        endpoint = ChildProcess.scones(
            "endpoint",
            [
                "serve",
                "--model",
                "production",
                "--port",
                str(port),
                "--store",
                conf.store,
                "--capture-uri",
                conf.capture_uri,
                "--endpoint-name",
                conf.endpoint_name,
            ],
            ready_url=endpoint_url + "/ping",
        )
        with stages.stage("start endpoint") as step:
            endpoint.start()
            step(info=endpoint_url)
        try:
            _run_workflow(options, conf, store, endpoint_url, stages, summary)
        finally:
            with stages.stage("stop endpoint"):
                endpoint.stop()
        # The registered version the endpoint served, so the report names it (not a folder).
        _monitor(conf, str(summary.model_version), stages, summary)
    return summary


def _stage_and_train(
    options: DemoOptions, conf: Settings, store: ObjectStore, stages: _Stages, summary: DemoSummary
) -> Path:
    from scones.data.stage import stage
    from scones.model.evaluate import evaluate_model
    from scones.model.registry import promote, register
    from scones.model.train import make_config, train_model

    with stages.stage("stage data") as step:
        report = stage(
            options.source,
            store,
            classes=conf.class_names,
            val_fraction=0.1,
            seed=options.seed,
            md5=None,
            cache_dir=conf.cache_dir,
        )
        summary.stage_counts = {split: report.total(split) for split in report.counts}
        step(info=", ".join(f"{k} {v}" for k, v in summary.stage_counts.items()))

    epochs = options.epochs or (FAST_EPOCHS if options.fast else None)
    values: dict[str, Any] = {"seed": options.seed}
    if epochs:
        values["epochs"] = epochs
    if options.fast:
        values["members"] = FAST_MEMBERS
    config = make_config(values)
    model_dir = conf.home / "demo-model"
    with stages.stage("train", total=config.epochs * config.members) as step:

        def on_epoch(epoch: Any) -> None:
            step(info=f"loss {epoch.train_loss:.3f}  val acc {epoch.val_accuracy:.3f}")

        trained = train_model(store, config, model_dir, name=conf.model_name, on_epoch=on_epoch)
    summary.validation_accuracy = trained.card.metrics.get("accuracy")
    summary.threshold = conf.routing_threshold(trained.card.metrics.get("recommended_threshold"))

    with stages.stage("evaluate (test split)") as step:
        metrics = evaluate_model(model_dir, store, split="test", threshold=summary.threshold)
        summary.test_accuracy = metrics["accuracy"]
        summary.test_images = metrics["n"]
        summary.recommended_threshold = metrics.get("recommended_threshold")
        summary.test_coverage = metrics["coverage_at_recommended"]
        summary.test_coverage_interval = metrics.get("coverage_interval")
        step(info=f"accuracy {metrics['accuracy']:.3f} on {metrics['n']} images")

    with stages.stage("register and promote") as step:
        version = register(store, model_dir, conf.model_name)
        promote(store, conf.model_name, version.version)
        summary.model_version = version.version
        step(info=f"{conf.model_name} v{version.version} -> production")
    return model_dir


def _run_workflow(
    options: DemoOptions,
    conf: Settings,
    store: ObjectStore,
    endpoint_url: str,
    stages: _Stages,
    summary: DemoSummary,
) -> None:
    from scones.data.layout import image_key, read_lst
    from scones.review.actions import ReviewConfig, ReviewHook
    from scones.workflow import runs
    from scones.workflow.executions import ExecutionStore

    keys = [image_key("test", entry.path) for entry in read_lst(store, "test")]
    for key, data in out_of_distribution_images(options.ood_images, options.seed).items():
        store.put(key, data, content_type="image/png")
        keys.append(key)
    runs.configure_local_functions(
        endpoint_url=endpoint_url,
        threshold=summary.threshold,
        bucket_store=(DEMO_BUCKET, conf.store),
    )
    review = ReviewConfig(conf.db, tuple(conf.class_names), conf.s3_endpoint_url)
    version = "" if summary.model_version is None else str(summary.model_version)
    with (
        stages.stage("workflow", total=len(keys)) as step,
        ReviewHook(review, store, version) as add_for_review,
    ):

        def on_done(record: Any) -> None:
            add_for_review(record)  # a threshold failure becomes a review item
            outcome = runs.outcome_of(record)
            if outcome.routed:
                summary.passed += 1
            else:
                summary.failed += 1
                summary.failed_keys.append(outcome.s3_key)
            step(info=f"{summary.passed} passed, {summary.failed} failed")

        with ExecutionStore(conf.db) as db:
            runs.run_single_executions(
                db, DEMO_BUCKET, keys, concurrency=options.concurrency, on_done=on_done
            )
        summary.awaiting_review = add_for_review.queue.counts()["pending"]
    failed_dir = conf.home / "failed-images"
    failed_dir.mkdir(parents=True, exist_ok=True)
    for key in summary.failed_keys:
        (failed_dir / key.replace("/", "__")).write_bytes(store.get(key))
    summary.failed_images_dir = failed_dir


def _monitor(conf: Settings, model_ref: str, stages: _Stages, summary: DemoSummary) -> None:
    from scones.monitor.report import monitor_report
    from scones.monitor.runner import MonitorOptions

    report_dir = conf.home / "report"
    with stages.stage("monitoring report") as step:
        result = monitor_report(
            MonitorOptions(
                capture_uri=conf.capture_uri,
                endpoint_name=conf.endpoint_name,
                threshold=conf.threshold if summary.threshold is None else summary.threshold,
                model_ref=model_ref,
                store_uri=conf.store,
                s3_endpoint_url=conf.s3_endpoint_url,
                cache_dir=conf.cache_dir,
            ),
            report_dir,
        )
        summary.drift_violations = len(result.violations.get("violations", []))
        summary.report_dir = report_dir
        step(info=f"{result.summary['records']['total']} records")
