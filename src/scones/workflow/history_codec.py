"""How an execution's history is stored: every event exactly, at little CPU per execution.

A history repeats its payloads: each state's input and output (with the image as base64) is
JSON text in several events, and the image sits inside most of them. A stored history
(format 4) is:

- one byte ``\\x04`` (formats 1 and 2 are bare zlib streams, which start with ``x``);
- one zstd frame of text: a first line ``{"events": [...], "payloads": [[event index,
  details key, field, line], ...]}`` with those detail fields set to 0, then one line per
  distinct long detail string (JSON text never holds a raw newline; a string that does
  stays in the head).

Each distinct payload is written once, and zstd stores the image that the distinct payloads
share once more and refers back to it (its window holds the whole history). Format 3 (zlib,
with the image cut out by hand and stored as bytes) took three times the CPU for the same
size; it, and formats 1 and 2, still read. Reading reverses each step, so the events read
back equal the events written, byte for byte in every string.
"""

from __future__ import annotations

import binascii
import json
import threading
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import zstandard

from scones.times import iso_utc

FORMAT = 4
_MAGIC = b"\x04"
_MAGIC_FORMAT_3 = b"\x03"
# Level 1: the same size as level 3 on these histories (the image is the bulk, and it is
# repeated, not compressible), at less CPU.
_ZSTD_LEVEL = 1
# Detail strings at least this long (inputs, outputs, parameters) are stored once each.
PAYLOAD_MIN_CHARS = 128
_MARK = "\x00"  # format 3: a run's marker in a payload line
# A compressor keeps its tables between calls; it is not for two threads at once.
_local = threading.local()
# The text of an aware UTC datetime as orjson writes it: what isoformat gives, except that
# orjson leaves out a zero microsecond field (then the length tells).
_ISO_CHARS = len("2026-12-03T09:00:00.000000+00:00")


def event_timestamp(value: Any) -> Any:
    """An event's timestamp as stored: ISO text (fixed width, UTC) for a datetime."""
    if type(value) is datetime:
        # The common case, aware UTC from the ASL runtime: no time-zone conversion.
        if value.tzinfo is UTC:
            return value.isoformat(timespec="microseconds")
        return iso_utc(value)
    return value


def _timestamp_texts(events: list[dict]) -> list[Any]:
    """Each event's timestamp as stored, all at once: orjson formats a list of datetimes in
    a quarter of the time isoformat takes one by one."""
    stamps = [event.get("timestamp") for event in events]
    if not all(type(stamp) is datetime and stamp.tzinfo is UTC for stamp in stamps):
        return [event_timestamp(stamp) for stamp in stamps]
    texts = orjson.dumps(stamps).decode("ascii")[2:-2].split('","')
    return [
        text if len(text) == _ISO_CHARS else event_timestamp(stamp)
        for text, stamp in zip(texts, stamps, strict=True)
    ]


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    return compressor


def encode_history(events: list[dict]) -> tuple[bytes, list[dict]]:
    """The stored form of ``events`` (format 4), and the events as they read back.

    Datetime timestamps become ISO text (in both).
    """
    stored: list[dict] = []
    skeleton: list[dict] = []
    refs: list[list] = []
    lines: dict[str, int] = {}
    stamps = _timestamp_texts(events) if events else []
    for index, event in enumerate(events):
        stamp = stamps[index]
        if stamp is not event.get("timestamp"):
            event = {**event, "timestamp": stamp}
        stored.append(event)
        for key, details in event.items():
            if type(details) is not dict:
                continue
            moved = None
            for field, value in details.items():
                if type(value) is str and len(value) >= PAYLOAD_MIN_CHARS and "\n" not in value:
                    line = lines.setdefault(value, len(lines))
                    refs.append([index, key, field, line])
                    if moved is None:
                        moved = dict(details)
                    moved[field] = 0  # filled in on reading; not null, see _encode_head
            if moved is not None:
                if event is stored[-1]:
                    event = dict(event)
                event[key] = moved
        skeleton.append(event)
    text = "\n".join([_encode_head({"events": skeleton, "payloads": refs}), *lines])
    return _MAGIC + _compressor().compress(text.encode("utf-8")), stored


def decode_history(blob: bytes | None) -> list[dict]:
    """The events of a stored history (any format); [] for None (still RUNNING)."""
    if blob is None:
        return []
    tail = b""
    if blob[:1] == _MAGIC:
        text = _unzstd(blob[1:])
    elif blob[:1] == _MAGIC_FORMAT_3:
        inflate = zlib.decompressobj()
        text = inflate.decompress(blob[1:]).decode("utf-8")
        if not inflate.eof:
            raise ValueError("truncated history")
        tail = inflate.unused_data
    else:
        text = zlib.decompress(blob).decode("utf-8")
        if text.startswith("["):
            return json.loads(text)  # format 1: the events as one JSON array
    head, *lines = text.split("\n")
    stored = json.loads(head)
    runs = _read_runs(stored.get("runs") or [], tail)
    if runs:
        lines = [_restore_runs(line, runs) if _MARK in line else line for line in lines]
    events = stored["events"]
    for index, key, field, line in stored["payloads"]:
        events[index][key][field] = lines[line]
    return events


def _unzstd(frame: bytes) -> str:
    """The text of one whole zstd frame; ValueError if it is cut short, corrupt or followed."""
    inflate = zstandard.ZstdDecompressor().decompressobj()
    try:
        data = inflate.decompress(frame)
    except zstandard.ZstdError as exc:
        raise ValueError(f"corrupt history: {exc}") from exc
    if not inflate.eof:
        raise ValueError("truncated history")
    if inflate.unused_data:
        raise ValueError("history has data after its end")
    return data.decode("utf-8")


def json_default(value: Any) -> Any:
    """What JSON cannot spell, as stored: datetimes as ISO text, bytes as UTF-8 text."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


# Histories are trees the runtime built (no cycles to look for): a sixth cheaper.
_encode_head_stdlib = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False, default=json_default
).encode
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _encode_head(head: dict[str, Any]) -> str:
    """The head's JSON text, by orjson (a tenth of the standard library's CPU). The standard
    library writes it where orjson would not read back the same: a NaN or an infinity
    (orjson writes null, hence the placeholders are 0), a subclass, a big integer."""
    try:
        data = orjson.dumps(head, default=json_default, option=_ORJSON_OPTIONS)
    except TypeError:
        return _encode_head_stdlib(head)
    if b"null" in data:
        return _encode_head_stdlib(head)
    return data.decode("utf-8")


def _read_runs(kinds: list[list], tail: bytes) -> list[str]:
    runs: list[str] = []
    offset = 0
    for kind, size in kinds:
        data = tail[offset : offset + size]
        if len(data) != size:
            raise ValueError("truncated history")
        offset += size
        if kind == "b":
            runs.append(binascii.b2a_base64(data, newline=False).decode("ascii"))
        else:
            runs.append(data.decode("utf-8"))
    return runs


def _restore_runs(line: str, runs: list[str]) -> str:
    parts = line.split(_MARK)
    # Markers split the line as text, number, text, number, ..., text.
    for position in range(1, len(parts), 2):
        parts[position] = runs[int(parts[position])]
    return "".join(parts)
