"""How an execution's history is stored: every event exactly, at little CPU per execution.

A history repeats its payloads: each state's input and output (with the image as base64) is
JSON text in several events, and the image sits inside most of them. Writing that through
zlib costs more than the rest of the runtime, so a stored history (format 3) is:

- one byte ``\\x03`` (formats 1 and 2 are bare zlib streams, which start with ``x``);
- a zlib stream of text: a first line ``{"events": [...], "payloads": [[event index,
  details key, field, line], ...], "runs": [[kind, bytes], ...]}`` with those detail fields
  set to 0 (null before 2026-12-03), then one line per distinct long detail string (JSON
  text never holds a raw newline); in those lines, each long run of characters between two
  double quotes (the image) is stored once and replaced by a marker ``\\x00<n>\\x00``;
- the runs, one after another, outside zlib: canonical base64 as its decoded bytes (kind
  ``b``, three quarters of the size, and nothing for zlib to do on incompressible PNG
  data), anything else as UTF-8 (kind ``t``).

Reading reverses each step, so the events read back equal the events written, byte for byte
in every string. Formats 1 (one JSON array) and 2 (format 3 without runs) still read.
"""

from __future__ import annotations

import binascii
import json
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson

from scones.times import iso_utc

FORMAT = 3
_MAGIC = b"\x03"
_ZLIB_LEVEL = 3
# An 8 KB window and small hash tables: what is left once the runs are set apart is about
# 9 KB of text, so the ratio is the same, and the compressor's ~40 KB of state stays in
# malloc's arena; zlib's default (256 KB) goes back to the OS after each call and faults
# in again (twice the CPU, in the runner's threads). Any zlib reader inflates it.
_ZLIB_WBITS = 13
_ZLIB_MEMLEVEL = 6
# Detail strings at least this long (inputs, outputs, parameters) are stored once each.
PAYLOAD_MIN_CHARS = 128
# Runs between quotes at least this long (base64 images) are stored once each, outside zlib.
RUN_MIN_CHARS = 512
_MARK = "\x00"  # never raw in JSON text; histories that hold one keep their runs inline
_PROBE_CHARS = 32


def event_timestamp(value: Any) -> Any:
    """An event's timestamp as stored: ISO text (fixed width, UTC) for a datetime."""
    if type(value) is datetime:
        # The common case, aware UTC from the ASL runtime: no time-zone conversion.
        if value.tzinfo is UTC:
            return value.isoformat(timespec="microseconds")
        return iso_utc(value)
    return value


def encode_history(events: list[dict]) -> tuple[bytes, list[dict]]:
    """The stored form of ``events`` (format 3), and the events as they read back.

    Datetime timestamps become ISO text (in both).
    """
    stored: list[dict] = []
    skeleton: list[dict] = []
    refs: list[list] = []
    lines: dict[str, int] = {}
    for index, event in enumerate(events):
        stamp = event.get("timestamp")
        if type(stamp) is datetime:
            event = {**event, "timestamp": event_timestamp(stamp)}
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
    texts, runs = _set_runs_apart(list(lines))
    kinds: list[list] = []
    parts: list[bytes] = []
    for run in runs:
        kind, data = _run_bytes(run)
        kinds.append([kind, len(data)])
        parts.append(data)
    head = {"events": skeleton, "payloads": refs, "runs": kinds}
    text = "\n".join([_encode_head(head), *texts])
    deflate = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, _ZLIB_WBITS, _ZLIB_MEMLEVEL)
    packed = text.encode("utf-8")
    blob = b"".join([_MAGIC, deflate.compress(packed), deflate.flush(), *parts])
    return blob, stored


def decode_history(blob: bytes | None) -> list[dict]:
    """The events of a stored history (any format); [] for None (still RUNNING)."""
    if blob is None:
        return []
    if blob[:1] == _MAGIC:
        inflate = zlib.decompressobj()
        text = inflate.decompress(blob[1:]).decode("utf-8")
        if not inflate.eof:
            raise ValueError("truncated history")
        tail = inflate.unused_data
    else:
        text = zlib.decompress(blob).decode("utf-8")
        if text.startswith("["):
            return json.loads(text)  # format 1: the events as one JSON array
        tail = b""
    head, *lines = text.split("\n")
    stored = json.loads(head)
    runs = _read_runs(stored.get("runs") or [], tail)
    if runs:
        lines = [_restore_runs(line, runs) if _MARK in line else line for line in lines]
    events = stored["events"]
    for index, key, field, line in stored["payloads"]:
        events[index][key][field] = lines[line]
    return events


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


def _set_runs_apart(lines: list[str]) -> tuple[list[str], list[str]]:
    """The lines with each long run between quotes replaced by its marker, and the runs."""
    if any(_MARK in line for line in lines):
        return lines, []  # not JSON text from the runtime: keep it whole
    runs: list[str] = []
    out: list[str] = []
    for line in lines:
        for number, run in enumerate(runs):
            line = _replace_run(line, run, f"{_MARK}{number}{_MARK}")
        segments = line.split('"') if len(line) >= RUN_MIN_CHARS else ()
        if segments and max(map(len, segments)) >= RUN_MIN_CHARS:
            for segment in segments:
                if len(segment) >= RUN_MIN_CHARS and _MARK not in segment:
                    line = _replace_run(line, segment, f"{_MARK}{len(runs)}{_MARK}")
                    runs.append(segment)
        out.append(line)
    return out, runs


def _replace_run(line: str, run: str, marker: str) -> str:
    """``line.replace(run, marker)``, found by a short probe: a long needle costs str.find
    a preprocessing pass over all of it on every call, a short one almost nothing."""
    probe = run[:_PROBE_CHARS]
    start = line.find(probe)
    if start < 0:
        return line
    pieces: list[str] = []
    done = 0
    while start >= 0:
        if line.startswith(run, start):
            pieces += (line[done:start], marker)
            done = start + len(run)
            start = line.find(probe, done)
        else:
            start = line.find(probe, start + 1)
    pieces.append(line[done:])
    return "".join(pieces)


def _run_bytes(run: str) -> tuple[str, bytes]:
    if run.isascii():
        try:
            data = binascii.a2b_base64(run, strict_mode=True)
        except (binascii.Error, ValueError):
            pass
        else:
            # Only canonical base64 comes back as the same text (padding, no newlines).
            if binascii.b2a_base64(data, newline=False) == run.encode("ascii"):
                return "b", data
    return "t", run.encode("utf-8")


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
