"""Where review items come from: executions that failed on the threshold, and captured
requests whose top probability was under it.

Both are read through their owners' public readers (the executions store, the capture
reader). An image is read once, to hash it: the item refers to it by store and key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scones.monitor.capture_reader import (
    CaptureRecord,
    ReadCounters,
    decode_input_bytes,
    iter_capture_records,
    list_capture_files,
)
from scones.review.queue import ItemCandidate, ReviewQueue
from scones.store import ObjectNotFoundError, ObjectStore, StoreError, validate_key
from scones.workflow.executions import ExecutionRecord, ExecutionStore

LOW_CONFIDENCE_ERROR = "ThresholdConfidenceNotMet"
EXECUTION_SOURCE = "execution"
CAPTURE_SOURCE = "capture"
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# The filter function's message: "... has confidence 0.6123, below the threshold 0.93"
_THRESHOLD_IN_CAUSE = re.compile(r"below the threshold ([0-9.eE+-]+)")


@dataclass
class SyncReport:
    """What one import saw: items added, records already known, and what was skipped why."""

    added: int = 0
    known: int = 0
    merged: int = 0  # a new source whose image already was an item
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "known": self.known,
            "merged": self.merged,
            "skipped": dict(self.skipped),
        }


def _margin(probabilities: list[float]) -> tuple[int, float, float]:
    """(top index, top probability, top minus runner-up)."""
    order = sorted(range(len(probabilities)), key=probabilities.__getitem__, reverse=True)
    top = float(probabilities[order[0]])
    second = float(probabilities[order[1]]) if len(order) > 1 else 0.0
    return order[0], top, top - second


def _class_name(index: int, class_names: list[str] | None) -> str:
    if class_names and index < len(class_names):
        return str(class_names[index])
    return f"class {index}"


def _inferences_in_history(history: list[dict]) -> tuple[list[float] | None, list[str] | None]:
    """The latest probabilities (and class names, when a state carried them) in a history."""
    found: list[float] | None = None
    for event in reversed(history):
        for details in event.values():
            if not isinstance(details, dict):
                continue
            for name in ("output", "input"):
                text = details.get(name)
                if not isinstance(text, str) or '"inferences"' not in text:
                    continue
                try:
                    body = json.loads(text)
                except ValueError:
                    continue
                inferences = body.get("inferences") if isinstance(body, dict) else None
                if not isinstance(inferences, list) or not inferences:
                    continue
                if not all(isinstance(p, int | float) for p in inferences):
                    continue
                classes = body.get("classes")
                if isinstance(classes, list) and len(classes) == len(inferences):
                    return [float(p) for p in inferences], [str(c) for c in classes]
                found = found or [float(p) for p in inferences]
    return found, None


def _read_limited(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as stream:
        data = stream.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"over the {MAX_IMAGE_BYTES}-byte limit for one image")
    return data


def _candidate_for_key(
    key: Any,
    inferences: list[float] | None,
    classes: list[str] | None,
    cause: str | None,
    observed_at: datetime,
    image_store: ObjectStore,
    model_version: str,
) -> ItemCandidate | str:
    if not isinstance(key, str):
        return "no s3_key in the execution input"
    try:
        validate_key(key)
        data = _read_limited(image_store, key)
    except ObjectNotFoundError:
        return "image no longer in the store"
    except (StoreError, ValueError) as exc:
        return f"image unreadable: {type(exc).__name__}"
    if not inferences:
        return "no probabilities in the execution history"
    index, top, margin = _margin(inferences)
    match = _THRESHOLD_IN_CAUSE.search(cause or "")
    threshold = float(match.group(1).rstrip(".")) if match else None
    return ItemCandidate(
        image_sha256=hashlib.sha256(data).hexdigest(),
        store_uri=image_store.uri,
        image_key=key,
        capture_line=None,
        predicted_class=_class_name(index, classes),
        confidence=top,
        margin=margin,
        threshold=threshold,
        model_version=model_version,
        observed_at=observed_at,
    )


def candidate_from_execution(
    record: ExecutionRecord,
    image_store: ObjectStore,
    *,
    model_version: str = "",
    class_names: list[str] | None = None,
) -> ItemCandidate | str:
    """The review candidate of a threshold failure, or why the execution is not one."""
    if record.status != "FAILED" or record.error != LOW_CONFIDENCE_ERROR:
        return "not a threshold failure"
    key = record.input.get("s3_key") if isinstance(record.input, dict) else None
    inferences, classes = _inferences_in_history(record.history)
    return _candidate_for_key(
        key,
        inferences,
        classes or class_names,
        record.cause,
        record.stopped_at or record.started_at,
        image_store,
        model_version,
    )


def candidates_from_map(
    record: ExecutionRecord,
    image_store: ObjectStore,
    *,
    model_version: str = "",
    class_names: list[str] | None = None,
) -> list[tuple[str, ItemCandidate | str]]:
    """(ref, candidate or why not) for each LOW_CONFIDENCE result of a Map execution."""
    results = record.output.get("results") if isinstance(record.output, dict) else None
    found: list[tuple[str, ItemCandidate | str]] = []
    for index, result in enumerate(results if isinstance(results, list) else []):
        if not isinstance(result, dict) or result.get("status") != "LOW_CONFIDENCE":
            continue
        inferences = result.get("inferences")
        probabilities = (
            [float(p) for p in inferences]
            if isinstance(inferences, list) and all(isinstance(p, int | float) for p in inferences)
            else None
        )
        found.append(
            (
                f"{record.execution_id}#{index}",
                _candidate_for_key(
                    result.get("s3_key"),
                    probabilities,
                    class_names,
                    result.get("cause"),
                    record.stopped_at or record.started_at,
                    image_store,
                    model_version,
                ),
            )
        )
    return found


def candidate_from_capture(
    record: CaptureRecord,
    capture_store: ObjectStore,
    *,
    threshold: float,
    class_names: list[str] | None,
    model_version: str = "",
) -> ItemCandidate | str:
    """The review candidate of a captured request under the threshold, or why not."""
    if record.probabilities is None:
        return record.output_problem or "no probabilities"
    index, top, margin = _margin(record.probabilities)
    if top >= threshold:
        return "confident"
    try:
        data = decode_input_bytes(record)
    except ValueError:
        return "input not captured as base64"
    return ItemCandidate(
        image_sha256=hashlib.sha256(data).hexdigest(),
        store_uri=capture_store.uri,
        image_key=record.file_key,
        capture_line=record.line_number,
        predicted_class=_class_name(index, class_names),
        confidence=top,
        margin=margin,
        threshold=threshold,
        model_version=model_version,
        observed_at=record.time,
    )


def _add(
    queue: ReviewQueue, found: ItemCandidate | str, source: str, ref: str, report: SyncReport
) -> None:
    if isinstance(found, str):
        report.skipped[f"{source}: {found}"] += 1
        return
    if queue.has_source(source, ref):
        report.known += 1
        return
    _, created = queue.add(found, source=source, ref=ref)
    if created:
        report.added += 1
    else:
        report.merged += 1


def add_execution(
    queue: ReviewQueue,
    record: ExecutionRecord,
    image_store: ObjectStore,
    *,
    model_version: str = "",
    report: SyncReport | None = None,
) -> SyncReport:
    """Make a finished execution a review item when it failed on the threshold."""
    report = report if report is not None else SyncReport()
    if record.status == "SUCCEEDED":  # a Map execution reports unsure images as results
        for ref, candidate in candidates_from_map(
            record, image_store, model_version=model_version, class_names=list(queue.classes)
        ):
            _add(queue, candidate, EXECUTION_SOURCE, ref, report)
        return report
    if queue.has_source(EXECUTION_SOURCE, record.execution_id):
        report.known += 1
        return report
    found = candidate_from_execution(
        record, image_store, model_version=model_version, class_names=list(queue.classes)
    )
    _add(queue, found, EXECUTION_SOURCE, record.execution_id, report)
    return report


def execution_hook(
    queue: ReviewQueue, image_store: ObjectStore, *, model_version: str = ""
) -> Callable[[ExecutionRecord], None]:
    """A callback for the workflow's ``on_done``: each finished execution, reviewed if unsure."""

    def on_done(record: ExecutionRecord) -> None:
        add_execution(queue, record, image_store, model_version=model_version)

    return on_done


def sync_executions(
    queue: ReviewQueue,
    executions: ExecutionStore,
    image_store: ObjectStore,
    *,
    model_version: str = "",
    since: datetime | None = None,
    report: SyncReport | None = None,
) -> SyncReport:
    """Every threshold failure in the executions database, imported once."""
    report = report if report is not None else SyncReport()
    for status in ("FAILED", "SUCCEEDED"):  # threshold failures; Map results
        for record in executions.list(status=status, limit=1_000_000, since=since):
            add_execution(queue, record, image_store, model_version=model_version, report=report)
    return report


def sync_capture(
    queue: ReviewQueue,
    capture_store: ObjectStore,
    *,
    endpoint_name: str | None,
    threshold: float,
    model_version: str = "",
    since: datetime | None = None,
    report: SyncReport | None = None,
) -> tuple[SyncReport, ReadCounters]:
    """Every captured request under ``threshold``, imported once (by its event id)."""
    report = report if report is not None else SyncReport()
    counters = ReadCounters()
    files = list_capture_files(capture_store, endpoint_name, since=since, counters=counters)
    for record in iter_capture_records(capture_store, files, since=since, counters=counters):
        ref = record.event_id
        if queue.has_source(CAPTURE_SOURCE, ref):
            report.known += 1
            continue
        found = candidate_from_capture(
            record,
            capture_store,
            threshold=threshold,
            class_names=list(queue.classes),
            model_version=model_version,
        )
        if found == "confident":
            continue  # most traffic: not worth a line in the report
        _add(queue, found, CAPTURE_SOURCE, ref, report)
    return report, counters
