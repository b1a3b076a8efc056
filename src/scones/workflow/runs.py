"""What ``scones run`` does: pick images, run executions locally, summarise their outcomes."""

from __future__ import annotations

import json
import os
import random
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scones.errors import SconesError, UsageError
from scones.workflow.executions import ExecutionRecord, ExecutionStore

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
            raise UsageError(f"--threshold must be between 0 and 1, got {threshold!r}")
        os.environ["THRESHOLD"] = repr(threshold)
    if bucket_store is not None:
        bucket, store_uri = bucket_store
        os.environ[bucket_env_name(bucket)] = store_uri


def check_endpoint(endpoint_url: str, timeout: float = 5.0) -> None:
    """Fail fast, with a hint, when nothing answers ``GET /ping`` at the endpoint."""
    url = endpoint_url.rstrip("/") + "/ping"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint-url must be an http(s) URL, got {endpoint_url!r}")
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
            "`scones serve --model REF` or pass --endpoint-url"
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
        raise UsageError(f"--random must be at least 1, got {count}")
    entries = read_lst(store, split)
    if count > len(entries):
        raise UsageError(f"--random {count} is more than the {len(entries)} images in {split}.lst")
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
) -> list[ExecutionRecord]:
    """One execution of the single-image state machine per key, run concurrently."""
    from scones.workflow.local import local_runner

    if name is not None and len(keys) != 1:
        raise UsageError("--name names one execution; give exactly one --key with it")
    with local_runner(db, "single", max_concurrency=concurrency, clock=clock) as runner:
        inputs = [(name, {"s3_bucket": bucket, "s3_key": key, "image_data": ""}) for key in keys]
        return runner.run_all(inputs, on_done=on_done)


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


def _top(inferences: Any, classes: Any) -> tuple[str | None, float | None]:
    if not isinstance(inferences, list) or not inferences:
        return None, None
    index = max(range(len(inferences)), key=inferences.__getitem__)
    if isinstance(classes, list) and index < len(classes):
        return str(classes[index]), float(inferences[index])
    return f"class {index}", float(inferences[index])


def _last_seen_body(history: list[dict]) -> dict[str, Any]:
    """The latest state input or output in the history with inferences (and class names)."""
    found: dict[str, Any] = {}
    for event in reversed(history):
        for value in event.values():
            if not isinstance(value, dict):
                continue
            for field in ("output", "input"):
                text = value.get(field)
                if isinstance(text, str) and '"inferences"' in text:
                    try:
                        body = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(body, dict) and body.get("inferences"):
                        if body.get("classes"):
                            return body
                        found = found or body
    return found


def outcome_of(record: ExecutionRecord) -> ImageOutcome:
    """How one single-image execution ended, for people."""
    key = record.input.get("s3_key", "?") if isinstance(record.input, dict) else "?"
    if record.status == "SUCCEEDED" and isinstance(record.output, dict):
        top_class, confidence = _top(record.output.get("inferences"), record.output.get("classes"))
        return ImageOutcome(key, "ROUTED", top_class, confidence, None, None, record.execution_id)
    if record.status == "RUNNING":
        return ImageOutcome(key, "RUNNING", None, None, None, None, record.execution_id)
    body = _last_seen_body(record.history)
    top_class, confidence = _top(body.get("inferences"), body.get("classes"))
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
        top_class, confidence = _top(result.get("inferences"), class_names)
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
