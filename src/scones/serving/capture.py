"""Data capture in SageMaker's format, written off the request path in batches.

Files land at ``<prefix>/<endpoint>/<variant>/YYYY/MM/DD/HH/<MM-SS-mmm>-<uuid>.jsonl`` (UTC,
the time of the file's first record), one JSON record per line, exactly as SageMaker's
``DataCaptureConfig`` writes them, so tools that read SageMaker capture read ours.

Requests only append to an in-memory queue. A writer thread flushes every
``flush_interval_s`` (default 1 s): a crash loses at most that much; :meth:`close` (graceful
shutdown) flushes everything. The uuid in every file name keeps several workers or replicas
that write to the same prefix from colliding. A store failure never fails a request: the
records are retried on the next flush a few times, then dropped, counted and logged.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from scones.errors import ParameterError, UsageError
from scones.store import ObjectStore, join_key
from scones.times import iso_z

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_INTERVAL_S = 1.0
# Records held in memory at most; beyond this, new records are dropped (and counted).
DEFAULT_MAX_QUEUED_RECORDS = 100_000
# A flush that failed is retried on this many following flushes before its records drop.
DEFAULT_MAX_WRITE_ATTEMPTS = 3
# SageMaker's rule for endpoint and variant names.
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
# The content types SageMaker captures as text rather than base64.
_JSON_TYPES = ("application/json", "application/jsonlines")
_CSV_TYPES = ("text/csv",)


class CaptureOption(StrEnum):
    INPUT = "Input"
    OUTPUT = "Output"


def parse_capture_options(text: str) -> frozenset[CaptureOption]:
    """``"Input,Output"`` -> the options; names are case-insensitive, as in the AWS CLI."""
    by_name = {option.value.lower(): option for option in CaptureOption}
    options: set[CaptureOption] = set()
    for raw in text.split(","):
        name = raw.strip().lower()
        if name not in by_name:
            raise ParameterError(
                f"{{capture_options}}: {raw.strip()!r} is not a capture option in {text!r}; "
                "use Input, Output or Input,Output",
                "capture_options",
            )
        options.add(by_name[name])
    return frozenset(options)


def validate_sagemaker_name(parameter: str, name: str) -> str:
    """``name``, when SageMaker accepts it as an endpoint or variant name."""
    if not _SAGEMAKER_NAME.match(name):
        raise ParameterError(
            f"{{{parameter}}} {name!r} is not a valid SageMaker name: 1-63 letters, digits or "
            "hyphens, starting and ending with a letter or digit",
            parameter,
        )
    return name


def format_inference_time(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, as SageMaker writes ``inferenceTime``."""
    return iso_z(moment, "milliseconds")


def _encoding_for(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES:
        return "JSON"
    if media in _CSV_TYPES:
        return "CSV"
    return "BASE64"


def _capture_block(mode: str, content_type: str, data: bytes) -> dict[str, str]:
    encoding = _encoding_for(content_type)
    text = base64.b64encode(data).decode("ascii") if encoding == "BASE64" else data.decode()
    return {
        "observedContentType": content_type,
        "mode": mode,
        "data": text,
        "encoding": encoding,
    }


def build_capture_record(
    *,
    input_data: bytes | None,
    input_content_type: str,
    output_data: bytes | None,
    output_content_type: str,
    inference_time: datetime,
    event_id: str | None = None,
    inference_id: str | None = None,
    custom_attributes: str | None = None,
) -> dict[str, Any]:
    """One SageMaker capture record; ``None`` data leaves that side out (capture options)."""
    capture: dict[str, Any] = {}
    if input_data is not None:
        capture["endpointInput"] = _capture_block("INPUT", input_content_type, input_data)
    if output_data is not None:
        capture["endpointOutput"] = _capture_block("OUTPUT", output_content_type, output_data)
    metadata: dict[str, str] = {
        "eventId": event_id or str(uuid.uuid4()),
        "inferenceTime": format_inference_time(inference_time),
    }
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    if custom_attributes is not None:
        metadata["customAttributes"] = custom_attributes
    return {"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"}


def capture_file_key(endpoint_name: str, variant: str, moment: datetime, file_id: str) -> str:
    """``<endpoint>/<variant>/YYYY/MM/DD/HH/<MM-SS-mmm>-<uuid>.jsonl`` for a UTC moment."""
    moment = moment.astimezone(UTC)
    name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{file_id}.jsonl"
    return join_key(endpoint_name, variant, f"{moment:%Y/%m/%d/%H}", name)


@dataclass(frozen=True)
class CaptureConfig:
    endpoint_name: str = "scones-endpoint"
    variant: str = "AllTraffic"
    sampling_percentage: float = 100.0
    options: frozenset[CaptureOption] = frozenset({CaptureOption.INPUT, CaptureOption.OUTPUT})
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    max_queued_records: int = DEFAULT_MAX_QUEUED_RECORDS
    max_write_attempts: int = DEFAULT_MAX_WRITE_ATTEMPTS

    def __post_init__(self) -> None:
        validate_sagemaker_name("endpoint_name", self.endpoint_name)
        validate_sagemaker_name("variant", self.variant)
        if not 0.0 <= self.sampling_percentage <= 100.0:
            raise ParameterError(
                f"{{capture_sampling}} {self.sampling_percentage} is outside 0..100 (percent)",
                "capture_sampling",
            )
        if not self.options:
            raise ParameterError(
                "{capture_options} must name Input, Output or both", "capture_options"
            )
        if self.flush_interval_s <= 0:
            raise UsageError(f"capture flush interval {self.flush_interval_s} must be > 0")


@dataclass
class _Record:
    moment: datetime
    line: bytes


@dataclass
class _FailedFile:
    key: str
    records: list[_Record]
    attempts: int


CountFn = Callable[[int], None]


class CaptureWriter:
    """Queue capture records from requests; a thread writes them to the store in batches."""

    def __init__(
        self,
        store: ObjectStore,
        config: CaptureConfig,
        *,
        on_written: CountFn | None = None,
        on_dropped: CountFn | None = None,
        sampler: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config
        self._on_written = on_written or (lambda _n: None)
        self._on_dropped = on_dropped or (lambda _n: None)
        self._sampler = sampler
        self._pending: list[_Record] = []
        self._failed: list[_FailedFile] = []
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="scones-capture", daemon=True)
        self._thread.start()

    @property
    def captures_input(self) -> bool:
        return CaptureOption.INPUT in self.config.options

    @property
    def captures_output(self) -> bool:
        return CaptureOption.OUTPUT in self.config.options

    def should_sample(self) -> bool:
        """Whether this request is captured, by ``sampling_percentage`` (as SageMaker)."""
        percentage = self.config.sampling_percentage
        return percentage >= 100.0 or self._sampler() * 100.0 < percentage

    def record(
        self,
        *,
        input_data: bytes,
        input_content_type: str,
        output_data: bytes,
        output_content_type: str = "application/json",
        inference_time: datetime | None = None,
        inference_id: str | None = None,
        custom_attributes: str | None = None,
    ) -> None:
        """Queue one request's record; never blocks on the store, never raises for it."""
        moment = inference_time or datetime.now(UTC)
        record = build_capture_record(
            input_data=input_data if self.captures_input else None,
            input_content_type=input_content_type,
            output_data=output_data if self.captures_output else None,
            output_content_type=output_content_type,
            inference_time=moment,
            inference_id=inference_id,
            custom_attributes=custom_attributes,
        )
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._closed or len(self._pending) >= self.config.max_queued_records:
                reason = "closed" if self._closed else "queue full"
                self._drop(1, reason)
                return
            self._pending.append(_Record(moment, line))

    def flush(self) -> None:
        """Write everything queued now (on the caller's thread)."""
        with self._lock:
            records, self._pending = self._pending, []
            retries, self._failed = self._failed, []
        for failed in retries:
            self._write(failed.key, failed.records, failed.attempts)
        for key, group in self._group_into_files(records):
            self._write(key, group, 0)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking records and flush all of them (graceful shutdown: zero loss)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        # The thread's last flush may have failed: one final attempt, then count the loss.
        self.flush()
        with self._lock:
            lost = sum(len(failed.records) for failed in self._failed)
            self._failed = []
        if lost:
            self._drop(lost, "store failed at shutdown")

    # --- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.config.flush_interval_s)
            started = time.monotonic()
            try:
                self.flush()
            except Exception:  # the writer must outlive any bug in one flush
                logger.exception("data capture flush failed")
            if time.monotonic() - started > self.config.flush_interval_s:
                logger.warning("data capture flush took longer than the flush interval")

    def _group_into_files(self, records: list[_Record]) -> list[tuple[str, list[_Record]]]:
        # One file per UTC hour folder: a record always sits under the hour of its time.
        groups: dict[str, list[_Record]] = {}
        for record in records:
            groups.setdefault(f"{record.moment.astimezone(UTC):%Y%m%d%H}", []).append(record)
        files = []
        for group in groups.values():
            key = capture_file_key(
                self.config.endpoint_name, self.config.variant, group[0].moment, uuid.uuid4().hex
            )
            files.append((key, group))
        return files

    def _write(self, key: str, records: list[_Record], attempts: int) -> None:
        body = b"".join(record.line for record in records)
        try:
            self.store.put(key, body, content_type="application/jsonlines")
        except Exception as exc:  # any store failure: S3 errors, disk full, permissions
            attempts += 1
            if attempts >= self.config.max_write_attempts:
                logger.error(
                    "data capture: giving up on %s after %d failed writes: %s",
                    self.store.uri_for(key),
                    attempts,
                    exc,
                )
                self._drop(len(records), "store failed")
                return
            logger.warning(
                "data capture: writing %s failed (attempt %d, will retry): %s",
                self.store.uri_for(key),
                attempts,
                exc,
            )
            with self._lock:
                self._failed.append(_FailedFile(key, records, attempts))
            return
        with self._count_lock:
            self.written += len(records)
        self._on_written(len(records))

    def _drop(self, count: int, reason: str) -> None:
        with self._count_lock:
            self.dropped += count
        self._on_dropped(count)
        logger.warning("data capture: dropped %d record(s): %s", count, reason)
