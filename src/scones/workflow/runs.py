"""What ``scones run`` does: pick images, run executions locally, summarise their outcomes."""

from __future__ import annotations

import json
import os
import random
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scones.errors import ParameterError, SconesError
from scones.workflow.executions import ExecutionRecord, ExecutionStore, top_prediction

DEFAULT_BUCKET = "scones"
LOW_CONFIDENCE = "ThresholdConfidenceNotMet"


class EndpointUnavailableError(SconesError):
    """The endpoint the classify function calls does not answer."""


class WorkflowFailedError(SconesError):
    """An execution that should always succeed (the Map variant) failed."""


@dataclass(frozen=True)
class ImageOutcome:
    """One image's fate: routed with a class and confidence, or why it was not."""

    s3_key: str
    status: str  # ROUTED | LOW_CONFIDENCE | FAILED | RUNNING
    top_class: str | None
    confidence: float | None
    error: str | None
    message: str | None
    execution_id: str | None

    @property
    def routed(self) -> bool:
        return self.status == "ROUTED"

    def why_not_routed(self, threshold: float) -> str:
        """Empty when routed; else under the threshold, or the error and its message."""
        if self.routed:
            return ""
        if self.status == "LOW_CONFIDENCE":
            return f"under the threshold {threshold:g}"
        return f"{self.error}: {self.message}"


def bucket_env_name(bucket: str) -> str:
    """The variable the serializer reads to map ``bucket`` to a store URI."""
    return "SCONES_BUCKET_" + re.sub(r"[^A-Z0-9]", "_", bucket.upper())


def configure_local_functions(
    *,
    endpoint_url: str | None = None,
    threshold: float | None = None,
    bucket_store: tuple[str, str] | None = None,
) -> None:
    """Set the handlers' environment (as a Lambda deployment sets each function's) in-process."""
    if endpoint_url is not None:
        os.environ["SCONES_ENDPOINT_URL"] = endpoint_url
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ParameterError(
                f"{{threshold}} must be between 0 and 1, got {threshold!r}", "threshold"
            )
        os.environ["THRESHOLD"] = repr(threshold)
    if bucket_store is not None:
        bucket, store_uri = bucket_store
        os.environ[bucket_env_name(bucket)] = store_uri


def check_endpoint(endpoint_url: str, timeout: float = 5.0) -> None:
    """Fail fast, with a hint, when nothing answers ``GET /ping`` at the endpoint."""
    url = endpoint_url.rstrip("/") + "/ping"
    if not url.startswith(("http://", "https://")):
        raise ParameterError(
            f"{{endpoint_url}} must be an http(s) URL, got {endpoint_url!r}", "endpoint_url"
        )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - checked
            if response.status == 200:
                return
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise EndpointUnavailableError(
            f"no endpoint answers at {endpoint_url} ({exc}); start one with "
            "`scones serve --model REF` or pass {endpoint_url}",
            "endpoint_url",
        ) from None
    raise EndpointUnavailableError(f"endpoint {endpoint_url} is not ready: GET /ping -> {status}")


def endpoint_class_names(endpoint_url: str, timeout: float = 5.0) -> list[str] | None:
    """The endpoint's class names from ``GET /info``; None when it does not say."""
    try:
        with urllib.request.urlopen(  # noqa: S310 - an http(s) URL, checked by check_endpoint
            endpoint_url.rstrip("/") + "/info", timeout=timeout
        ) as response:
            names = json.loads(response.read(1024 * 1024)).get("class_names")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(names, list) and all(isinstance(name, str) for name in names):
        return names
    return None


def random_test_keys(
    store: Any, count: int, *, split: str = "test", seed: int | None = None
) -> list[tuple[str, str | None]]:
    """``count`` random (image key, true class name) pairs of a staged split."""
    from scones.data.layout import class_names, image_key, read_lst

    if count < 1:
        raise ParameterError(f"{{random_count}} must be at least 1, got {count}", "random_count")
    entries = read_lst(store, split)
    if count > len(entries):
        raise ParameterError(
            f"{{random_count}} {count} is more than the {len(entries)} images in {split}.lst",
            "random_count",
        )
    try:
        names: list[str] | None = class_names(store)
    except SconesError:
        names = None  # labels are shown when dataset.json is there; not needed to run
    chosen = random.Random(seed).sample(entries, count)  # the seed's generate_test_case
    return [
        (
            image_key(split, entry.path),
            names[entry.label] if names and entry.label < len(names) else None,
        )
        for entry in chosen
    ]


def run_single_executions(
    db: ExecutionStore,
    bucket: str,
    keys: list[str],
    *,
    concurrency: int = 16,
    name: str | None = None,
    clock: Any = None,
    on_done: Callable[[ExecutionRecord], None] | None = None,
    keep: Callable[[ExecutionRecord], Any] | None = None,
) -> list[Any]:
    """One execution of the single-image state machine per key, run concurrently: their
    records, or what ``keep`` makes of each (see ExecutionRunner.run_all)."""
    from scones.workflow.local import local_runner

    if name is not None and len(keys) != 1:
        raise ParameterError(
            "{name} names one execution; give exactly one {keys} with it", "name", "keys"
        )
    with local_runner(db, "single", max_concurrency=concurrency, clock=clock) as runner:
        inputs = [(name, {"s3_bucket": bucket, "s3_key": key, "image_data": ""}) for key in keys]
        if keep is None:
            return runner.run_all(inputs, on_done=on_done)
        return runner.run_all(inputs, on_done=on_done, keep=keep)


def run_map_execution(
    db: ExecutionStore,
    bucket: str,
    keys: list[str],
    *,
    name: str | None = None,
    clock: Any = None,
) -> ExecutionRecord:
    """One execution of the Map state machine over all ``keys``."""
    from scones.workflow.local import local_runner

    with local_runner(db, "map", max_concurrency=1, clock=clock) as runner:
        return runner.start({"s3_bucket": bucket, "keys": keys}, name=name)


def lambda_message(cause: str | None) -> str | None:
    """The errorMessage of Lambda's JSON cause, else the cause itself."""
    if not cause:
        return cause
    try:
        value = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(value, dict) and isinstance(value.get("errorMessage"), str):
        return value["errorMessage"]
    return cause


def history_row(event: dict[str, Any]) -> list[str]:
    """One history event for people: id, type, state name, and its error and cause."""
    details: Any = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
    state, detail = "", ""
    if isinstance(details, dict):
        state = str(details.get("name", ""))
        # Lambda causes are JSON with a stack trace: its message is what people need.
        detail = " ".join(
            f"{key}={lambda_message(details[key]) if key == 'cause' else details[key]}"
            for key in ("error", "cause")
            if details.get(key)
        )
    return [str(event.get("id", "")), str(event.get("type", "")), state, detail]


def outcome_of(record: ExecutionRecord) -> ImageOutcome:
    """How one single-image execution ended, for people."""
    key = record.input.get("s3_key", "?") if isinstance(record.input, dict) else "?"
    top_class, confidence = record.prediction()
    if record.status == "SUCCEEDED" and isinstance(record.output, dict):
        return ImageOutcome(key, "ROUTED", top_class, confidence, None, None, record.execution_id)
    if record.status == "RUNNING":
        return ImageOutcome(key, "RUNNING", None, None, None, None, record.execution_id)
    status = "LOW_CONFIDENCE" if record.error == LOW_CONFIDENCE else "FAILED"
    return ImageOutcome(
        key,
        status,
        top_class,
        confidence,
        record.error or record.status,
        lambda_message(record.cause),
        record.execution_id,
    )


def map_outcomes(
    record: ExecutionRecord, class_names: list[str] | None = None
) -> list[ImageOutcome]:
    """Per-key outcomes of a Map execution (empty when it did not succeed)."""
    if record.status != "SUCCEEDED" or not isinstance(record.output, dict):
        return []
    outcomes = []
    for result in record.output.get("results") or []:
        top_class, confidence = top_prediction(result.get("inferences"), class_names)
        outcomes.append(
            ImageOutcome(
                result.get("s3_key", "?"),
                result.get("status", "FAILED"),
                top_class,
                confidence,
                result.get("error"),
                lambda_message(result.get("cause")),
                record.execution_id,
            )
        )
    return outcomes


@dataclass(frozen=True)
class RunRequest:
    """What `scones run` was asked: which images, where they are, how to classify them."""

    endpoint_url: str
    threshold: float
    store_uri: str  # the store the keys (and a --random split) are in
    db_path: Path
    keys: list[str] = field(default_factory=list)
    random_count: int | None = None  # instead of keys: this many random images of ``split``
    split: str = "test"
    seed: int | None = None
    use_map: bool = False  # one Map execution over all keys instead of one execution each
    bucket: str | None = None  # the bucket the events name; None: DEFAULT_BUCKET
    bucket_is_store: bool = True  # False: ``bucket`` is a real bucket, not ``store_uri``
    concurrency: int = 16
    name: str | None = None
    s3_endpoint_url: str | None = None
    # Called with each finished execution, single-image or Map (the review queue's hook).
    on_finished: Callable[[ExecutionRecord], None] | None = None


@dataclass(frozen=True)
class RunResult:
    """Each image's outcome, the true classes of random images, the Map execution if any."""

    outcomes: list[ImageOutcome]
    true_classes: dict[str, str | None]
    threshold: float
    map_execution: ExecutionRecord | None = None

    @property
    def all_routed(self) -> bool:
        return all(outcome.routed for outcome in self.outcomes)

    @property
    def routed_count(self) -> int:
        return sum(outcome.routed for outcome in self.outcomes)

    def to_dicts(self) -> list[dict[str, Any]]:
        """JSON-ready rows, one per image (`scones run --json`)."""
        return [
            asdict(outcome)
            | {
                "true_class": self.true_classes.get(outcome.s3_key),
                "why_not_routed": outcome.why_not_routed(self.threshold),
            }
            for outcome in self.outcomes
        ]


def run_images(request: RunRequest, announce: Callable[[str], None] | None = None) -> RunResult:
    """Run the workflow locally on the requested images; ``announce`` hears the Map status.

    Raises WorkflowFailedError when the Map execution itself fails (its per-image failures
    are outcomes, as single executions' are).
    """
    from scones.store import open_store

    if bool(request.keys) == (request.random_count is not None):
        raise ParameterError(
            "give {keys} (one or more) or {random_count} N", "keys", "random_count"
        )
    keys = list(request.keys)
    true_classes: dict[str, str | None] = {}
    if request.random_count is not None:
        store = open_store(request.store_uri, s3_endpoint_url=request.s3_endpoint_url)
        picked = random_test_keys(
            store, request.random_count, split=request.split, seed=request.seed
        )
        keys = [key for key, _ in picked]
        true_classes = dict(picked)
    bucket = request.bucket or DEFAULT_BUCKET
    configure_local_functions(
        endpoint_url=request.endpoint_url,
        threshold=request.threshold,
        bucket_store=(bucket, request.store_uri) if request.bucket_is_store else None,
    )
    check_endpoint(request.endpoint_url)
    with ExecutionStore(request.db_path) as db:
        if not request.use_map:
            outcomes = run_single_executions(
                db,
                bucket,
                keys,
                concurrency=request.concurrency,
                name=request.name,
                on_done=request.on_finished,
                keep=outcome_of,
            )
            return RunResult(outcomes, true_classes, request.threshold)
        record = run_map_execution(db, bucket, keys, name=request.name)
        if request.on_finished is not None:
            request.on_finished(record)
    if announce is not None:
        announce(f"{record.execution_id}: {record.status}")
    if record.status != "SUCCEEDED":
        raise WorkflowFailedError(
            f"execution {record.execution_id} {record.status}: {record.error}: "
            f"{lambda_message(record.cause)}"
        )
    class_names = endpoint_class_names(request.endpoint_url)
    return RunResult(map_outcomes(record, class_names), true_classes, request.threshold, record)
