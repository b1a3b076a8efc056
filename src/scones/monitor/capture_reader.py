"""Read SageMaker-format data capture: every record of every file under a prefix, in time order.

Layout (exactly SageMaker's)::

    <capture prefix>/<endpoint-name>/<variant>/YYYY/MM/DD/HH/<MM-SS-mmm>-<uuid>.jsonl

Each line is one JSON record (``captureData.endpointInput`` / ``endpointOutput`` and
``eventMetadata.inferenceTime``). Reading is streaming: files are opened lazily and merged
by inference time, so memory holds one pending record per overlapping file, whatever the
number of records. A malformed line or an unreadable file is counted and skipped, never fatal:
monitoring must still report on the rest of the traffic.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from scones.store import ObjectStore, StoreError, join_key

CHUNK_BYTES = 1024 * 1024
# A captured request is at most a few MB (the endpoint's payload limit); a longer line is
# damage, and skipping it without buffering keeps memory bounded.
MAX_RECORD_BYTES = 16 * 1024 * 1024

_CAPTURE_KEY = re.compile(
    r"(?:^|/)(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/(?P<year>\d{4})/(?P<month>\d{2})/"
    r"(?P<day>\d{2})/(?P<hour>\d{2})/(?P<minute>\d{2})-(?P<second>\d{2})-(?P<milli>\d{3})-"
    r"[^/]+\.jsonl$"
)


@dataclass(frozen=True, slots=True)
class CaptureFile:
    """One capture file and the time its name says it was started."""

    key: str
    endpoint: str
    variant: str
    start: datetime
    size: int


@dataclass(slots=True)
class CaptureRecord:
    """One captured request and response, as the monitor needs it."""

    timestamp: float  # inference time, POSIX seconds (cheap to compare and bucket)
    event_id: str
    inference_id: str | None
    content_type: str
    input_encoding: str
    input_data: str  # as captured (base64 text for images)
    probabilities: list[float] | None  # None when the output is missing or not a list
    output_problem: str | None
    file_key: str
    line_number: int  # 1-based line in file_key, to find the record again
    custom_attributes: str | None = None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz=UTC)


@dataclass
class ReadCounters:
    """What the reader saw that was not a usable record (reported, never fatal)."""

    files_listed: int = 0
    files_read: int = 0
    files_skipped: Counter[str] = field(default_factory=Counter)  # reason -> files
    files_failed: Counter[str] = field(default_factory=Counter)  # reason -> files
    malformed_lines: Counter[str] = field(default_factory=Counter)  # reason -> lines
    records_outside_window: int = 0
    malformed_examples: list[str] = field(default_factory=list)  # a few, for the report

    def merge(self, other: ReadCounters) -> None:
        self.files_listed += other.files_listed
        self.files_read += other.files_read
        self.files_skipped.update(other.files_skipped)
        self.files_failed.update(other.files_failed)
        self.malformed_lines.update(other.malformed_lines)
        self.records_outside_window += other.records_outside_window
        room = 20 - len(self.malformed_examples)
        self.malformed_examples.extend(other.malformed_examples[: max(room, 0)])

    def note_malformed(self, reason: str, where: str) -> None:
        self.malformed_lines[reason] += 1
        if len(self.malformed_examples) < 20:
            self.malformed_examples.append(f"{where}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "files_listed": self.files_listed,
            "files_read": self.files_read,
            "files_skipped": dict(self.files_skipped),
            "files_failed": dict(self.files_failed),
            "malformed_lines": sum(self.malformed_lines.values()),
            "malformed_lines_by_reason": dict(self.malformed_lines),
            "records_outside_window": self.records_outside_window,
            "malformed_examples": list(self.malformed_examples),
        }


def parse_capture_key(key: str, size: int = 0) -> CaptureFile | None:
    """The capture file a key names, or None when it is not in the SageMaker layout."""
    match = _CAPTURE_KEY.search(key)
    if match is None:
        return None
    parts = {name: int(value) for name, value in match.groupdict().items() if value.isdigit()}
    try:
        start = datetime(
            parts["year"],
            parts["month"],
            parts["day"],
            parts["hour"],
            parts["minute"],
            parts["second"],
            parts["milli"] * 1000,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    return CaptureFile(key, match["endpoint"], match["variant"], start, size)


def list_capture_files(
    store: ObjectStore,
    endpoint_name: str | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    counters: ReadCounters | None = None,
) -> list[CaptureFile]:
    """Capture files under ``<endpoint_name>/`` (all endpoints when None), by start time.

    Files whose hour folder lies wholly outside [since, until] are not read. A file may hold
    records up to an hour after its name (SageMaker rolls files, not hours), hence the slack.
    """
    counters = counters if counters is not None else ReadCounters()
    prefix = join_key(endpoint_name) + "/" if endpoint_name else ""
    files: list[CaptureFile] = []
    for info in store.list(prefix):
        counters.files_listed += 1
        capture_file = parse_capture_key(info.key, info.size)
        if capture_file is None:
            counters.files_skipped["not a capture file (SageMaker layout)"] += 1
            continue
        if endpoint_name and capture_file.endpoint != endpoint_name:
            counters.files_skipped["other endpoint"] += 1
            continue
        hour = capture_file.start.replace(minute=0, second=0, microsecond=0)
        if until is not None and capture_file.start > until:
            counters.files_skipped["outside --since/--until"] += 1
            continue
        if since is not None and hour + timedelta(hours=2) < since:
            counters.files_skipped["outside --since/--until"] += 1
            continue
        files.append(capture_file)
    files.sort(key=lambda f: (f.start, f.key))
    return files


def iter_lines(
    stream: BinaryIO, *, max_line_bytes: int = MAX_RECORD_BYTES
) -> Iterator[bytes | None]:
    """Lines of a binary stream without their newline; None for a line over the limit.

    Reads in chunks (S3 bodies have no readline) and splits each chunk in one call; an
    over-long line is dropped as it streams past, so it never sits in memory whole.
    """
    pending: list[bytes] = []  # the start of a line that continues into the next chunk
    pending_size = 0
    skipping = False
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            break
        pieces = chunk.split(b"\n")
        tail = pieces.pop()  # after the chunk's last newline: an unfinished line
        if pieces:
            first = pieces[0]
            if skipping:
                skipping = False
                pieces[0] = None  # type: ignore[call-overload]
            elif pending:
                pending.append(first)
                pieces[0] = b"".join(pending)
            pending, pending_size = [], 0
            for line in pieces:
                if line is None or len(line) > max_line_bytes:
                    yield None
                else:
                    yield line
        if skipping:
            continue
        pending.append(tail)
        pending_size += len(tail)
        if pending_size > max_line_bytes:
            pending, pending_size, skipping = [], 0, True
    if skipping:
        yield None
    elif pending and any(pending):
        yield b"".join(pending)


_decode_json = json.JSONDecoder().decode


class _TimeParser:
    """SageMaker's ``2026-11-26T15:04:05.123Z`` to POSIX seconds, remembering the last minute.

    Records arrive in time order, many within one minute: the date and time up to the minute
    are parsed once per minute, seconds and milliseconds by hand; anything not in that exact
    form goes through ``datetime.fromisoformat``.
    """

    def __init__(self) -> None:
        self._minute_text = ""
        self._minute = 0.0

    def __call__(self, text: str) -> float:
        if (
            len(text) == 24
            and text[16] == ":"
            and text[19] == "."
            and text[23] == "Z"
            and text[17:19].isdigit()
            and text[20:23].isdigit()
            and text[17] < "6"
        ):
            head = text[:16]
            if head != self._minute_text:
                self._minute = datetime.fromisoformat(head + "+00:00").timestamp()
                self._minute_text = head
            return self._minute + int(text[17:19]) + int(text[20:23]) / 1000.0
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:  # SageMaker writes UTC with a Z; a bare time is UTC too
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


def parse_record(
    line: bytes, file_key: str, line_number: int, parse_time: Callable[[str], float] | None = None
) -> CaptureRecord:
    """One capture line -> a record; ValueError with a short reason when it is malformed."""
    try:
        raw = _decode_json(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    try:
        # The fast path: a well-formed record; anything odd is explained below.
        capture = raw["captureData"]
        metadata = raw["eventMetadata"]
        endpoint_input = capture["endpointInput"]
        inference_time = metadata["inferenceTime"]
        data = endpoint_input["data"]
        if type(data) is not str or type(inference_time) is not str:
            raise TypeError
    except (KeyError, TypeError):
        raise ValueError(_record_problem(raw)) from None
    try:
        timestamp = (parse_time or _TimeParser())(inference_time)
    except ValueError:
        raise ValueError("eventMetadata.inferenceTime is not an ISO 8601 time") from None
    probabilities, problem = _parse_output(capture.get("endpointOutput"))
    inference_id = metadata.get("inferenceId")
    custom = metadata.get("customAttributes")
    return CaptureRecord(
        timestamp=timestamp,
        event_id=str(metadata.get("eventId") or f"{file_key}#{line_number}"),
        inference_id=inference_id if isinstance(inference_id, str) else None,
        content_type=str(endpoint_input.get("observedContentType") or ""),
        input_encoding=str(endpoint_input.get("encoding") or ""),
        input_data=data,
        probabilities=probabilities,
        output_problem=problem,
        file_key=file_key,
        line_number=line_number,
        custom_attributes=custom if isinstance(custom, str) else None,
    )


def _record_problem(raw: Any) -> str:
    """Why a parsed line is not a capture record, naming the missing or wrong key."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    capture = raw.get("captureData")
    metadata = raw.get("eventMetadata")
    if not isinstance(capture, dict) or not isinstance(metadata, dict):
        return "no captureData/eventMetadata"
    if not isinstance(capture.get("endpointInput"), dict):
        return "no captureData.endpointInput"
    if not isinstance(metadata.get("inferenceTime"), str):
        return "no eventMetadata.inferenceTime"
    return "captureData.endpointInput.data is not a string"


def _parse_output(output: Any) -> tuple[list[float] | None, str | None]:
    """The endpoint's probabilities, or None and why not (an error response, no output)."""
    if not isinstance(output, dict):
        return None, "no endpointOutput"
    data = output.get("data")
    if not isinstance(data, str):
        return None, "endpointOutput.data is not a string"
    encoding = output.get("encoding") or "JSON"
    if encoding == "JSON" and data[:1] == "[" and data[-1:] == "]":
        # The common case, a flat list of numbers, without a second JSON parse per record.
        try:
            probabilities = [float(p) for p in data[1:-1].split(",")]
        except ValueError:
            pass
        else:
            for p in probabilities:
                if not 0.0 <= p <= 1.0:  # also refuses NaN
                    return None, "endpointOutput has values outside [0, 1]"
            return probabilities, None
    try:
        text = base64.b64decode(data, validate=True) if str(encoding).upper() == "BASE64" else data
        value = json.loads(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None, "endpointOutput.data is not JSON"
    # The SageMaker contract is a bare list; accept {"probabilities": [...]} too.
    if isinstance(value, dict):
        value = value.get("probabilities")
    if not isinstance(value, list) or not value:
        return None, "endpointOutput is not a list of probabilities"
    try:
        probabilities = [float(p) for p in value]
    except (TypeError, ValueError):
        return None, "endpointOutput is not a list of probabilities"
    if any(not 0.0 <= p <= 1.0 for p in probabilities):
        return None, "endpointOutput has values outside [0, 1]"
    return probabilities, None


def iter_file_records(
    store: ObjectStore, capture_file: CaptureFile, counters: ReadCounters
) -> Iterator[CaptureRecord]:
    """Every well-formed record of one file; malformed lines and read failures counted."""
    try:
        stream = store.open(capture_file.key)
    except StoreError as exc:
        counters.files_failed[f"unreadable: {type(exc).__name__}"] += 1
        return
    counters.files_read += 1
    line_number = 0
    parse_time = _TimeParser()
    try:
        with stream:
            for line in iter_lines(stream):
                line_number += 1
                if line is None:
                    counters.note_malformed(
                        f"line longer than {MAX_RECORD_BYTES} bytes",
                        f"{capture_file.key}:{line_number}",
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    yield parse_record(line, capture_file.key, line_number, parse_time)
                except ValueError as exc:
                    counters.note_malformed(str(exc), f"{capture_file.key}:{line_number}")
    except (StoreError, OSError) as exc:
        # A file that breaks mid-read keeps the records already yielded.
        counters.files_failed[f"read failed: {type(exc).__name__}"] += 1


def iter_capture_records(
    store: ObjectStore,
    files: list[CaptureFile],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    counters: ReadCounters | None = None,
) -> Iterator[CaptureRecord]:
    """Records of ``files`` merged by inference time, opening each file only when needed.

    A file is opened once the merge reaches the time in its name, so only files whose time
    ranges overlap are open together (records in one file are in time order, as the endpoint
    appends them).
    """
    counters = counters if counters is not None else ReadCounters()
    low = since.timestamp() if since is not None else float("-inf")
    high = until.timestamp() if until is not None else float("inf")
    heap: list[tuple[float, int, CaptureRecord, Iterator[CaptureRecord]]] = []
    next_file = 0
    sequence = 0  # ties keep file order and never compare records

    def open_next() -> None:
        nonlocal next_file, sequence
        records = iter_file_records(store, files[next_file], counters)
        next_file += 1
        first = next(records, None)
        if first is not None:
            heapq.heappush(heap, (first.timestamp, sequence, first, records))
            sequence += 1

    while heap or next_file < len(files):
        while next_file < len(files) and (
            not heap or files[next_file].start.timestamp() <= heap[0][0]
        ):
            open_next()
        if not heap:
            continue
        _, _, record, records = heap[0]
        following = next(records, None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following.timestamp, sequence, following, records))
            sequence += 1
        if low <= record.timestamp <= high:
            yield record
        else:
            counters.records_outside_window += 1


def decode_input_bytes(record: CaptureRecord) -> bytes:
    """The captured request body; ValueError when it is not base64 as the record says."""
    if record.input_encoding.upper() != "BASE64":
        raise ValueError(f"input encoding {record.input_encoding!r} is not BASE64")
    try:
        return base64.b64decode(record.input_data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("input data is not valid base64") from None


def read_record_at(store: ObjectStore, file_key: str, line_number: int) -> CaptureRecord:
    """Re-read one record by its file and line (the dashboard's gallery fetches images so)."""
    with store.open(file_key) as stream:
        for number, line in enumerate(iter_lines(stream), start=1):
            if number == line_number:
                if line is None:
                    raise ValueError(f"{file_key}:{line_number} is longer than the limit")
                return parse_record(line, file_key, line_number)
    raise ValueError(f"{file_key} has no line {line_number}")
