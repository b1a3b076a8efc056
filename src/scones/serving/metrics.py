"""Prometheus metrics of one endpoint process, in its own registry (one per app).

Every series carries the served model's name and version as labels, so a dashboard can
tell versions apart across a deployment. With ``--workers N`` each worker process keeps its
own registry; a scrape of ``/metrics`` reads the worker that answered it (the ``pid`` label
of ``scones_endpoint_info`` says which).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "ServingMetrics"]

_LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_MODEL_LABELS = ("model_name", "model_version")


class ServingMetrics:
    """The endpoint's counters and histograms, bound to the served model."""

    def __init__(self, model_name: str, model_version: str, endpoint_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model = {"model_name": model_name, "model_version": model_version}
        registry = self.registry
        self.requests = Counter(
            "scones_requests",
            "HTTP requests answered, by path and status code.",
            ["path", "status", *_MODEL_LABELS],
            registry=registry,
        )
        self.latency = Histogram(
            "scones_invocation_latency_seconds",
            "Time from receiving an /invocations request to its answer, seconds.",
            _MODEL_LABELS,
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "scones_batch_size",
            "Images per ONNX Runtime call (dynamic micro-batching).",
            _MODEL_LABELS,
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.capture_written = Counter(
            "scones_capture_records_written",
            "Data capture records written to the store.",
            _MODEL_LABELS,
            registry=registry,
        )
        self.capture_dropped = Counter(
            "scones_capture_records_dropped",
            "Data capture records lost (store failures, queue full, shutdown).",
            _MODEL_LABELS,
            registry=registry,
        )
        self.model_loaded = Gauge(
            "scones_model_loaded",
            "1 once the model is loaded and /ping answers 200.",
            _MODEL_LABELS,
            registry=registry,
        )
        info = Gauge(
            "scones_endpoint_info",
            "The endpoint this process serves (always 1).",
            ["endpoint_name", "pid", *_MODEL_LABELS],
            registry=registry,
        )
        info.labels(endpoint_name=endpoint_name, pid=str(os.getpid()), **self.model).set(1)
        # Pre-create the labelled children so every series shows up at 0 from the start.
        self.model_loaded.labels(**self.model).set(0)
        self._latency = self.latency.labels(**self.model)
        self._batch = self.batch_size.labels(**self.model)
        self._written = self.capture_written.labels(**self.model)
        self._dropped = self.capture_dropped.labels(**self.model)

    def observe_request(self, path: str, status: int) -> None:
        self.requests.labels(path=path, status=str(status), **self.model).inc()

    def observe_latency(self, seconds: float) -> None:
        self._latency.observe(seconds)

    def observe_batch(self, size: int) -> None:
        self._batch.observe(size)

    def count_capture_written(self, count: int) -> None:
        self._written.inc(count)

    def count_capture_dropped(self, count: int) -> None:
        self._dropped.inc(count)

    def set_loaded(self, loaded: bool) -> None:
        self.model_loaded.labels(**self.model).set(1 if loaded else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
