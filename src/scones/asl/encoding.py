"""JSON text of payloads as Step Functions records them, and the payload size limit."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import orjson

PAYLOAD_LIMIT = 256 * 1024

# The text Step Functions payloads have here: compact, non-ASCII kept. It refuses what a
# Lambda's Python runtime cannot marshal (a UUID, an Enum, a datetime).
_encode_stdlib = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# orjson writes what the standard library writes (checked for every code point, and for
# floats of every magnitude in this range) for values built only of these: str keys, str,
# bool, None, 64-bit integers, finite floats whose repr has no exponent.
_INT_MIN, _INT_END = -(2**63), 2**64
_FLOAT_MIN, _FLOAT_END = 1e-4, 1e16


def _spelled_alike(value: Any) -> bool:
    """Whether orjson writes ``value`` as the standard library does (see above)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is float:
        return value == 0.0 or _FLOAT_MIN <= abs(value) < _FLOAT_END
    if kind is int:
        return _INT_MIN <= value < _INT_END
    if kind is dict:
        for key, member in value.items():
            if type(key) is not str or not _spelled_alike(member):
                return False
        return True
    if kind is list:
        return all(map(_spelled_alike, value))
    return False


def encode_json(value: Any) -> str:
    """The standard library's compact JSON text of ``value``, byte for byte; written by
    orjson where it spells the value alike: a third of the CPU on a payload with a base64
    image, half on small ones. Anything else, and what orjson refuses (a lone surrogate,
    deep nesting), goes to the standard library, which also raises what it raised before."""
    if type(value) is not str:
        try:
            if _spelled_alike(value):
                return orjson.dumps(value).decode("utf-8")
        except (orjson.JSONEncodeError, RecursionError):
            pass
    return _encode_stdlib(value)


def encode_with_known_member(value: Any, known: Any, known_text: str) -> str:
    """JSON text of `value`, reusing `known_text` for a top-level member that is `known`.

    Byte for byte what encode_json(value) gives: a Task's Parameters usually embed the
    state's input ("Payload.$": "$"), already encoded for the StateEntered event.
    """
    if type(value) is not dict or not any(v is known for v in value.values()):
        return encode_json(value)
    if not all(type(k) is str for k in value):
        return encode_json(value)  # the encoder converts other keys; leave that to it
    members = (
        encode_json(key) + ":" + (known_text if member is known else encode_json(member))
        for key, member in value.items()
    )
    return "{" + ",".join(members) + "}"


def exceeds_payload_limit(text: str) -> bool:
    length = len(text)
    if length > PAYLOAD_LIMIT:
        return True
    if length * 4 <= PAYLOAD_LIMIT:  # a character is at most 4 UTF-8 bytes
        return False
    return len(text.encode("utf-8")) > PAYLOAD_LIMIT


def iso_timestamp(seconds: float) -> str:
    """Epoch seconds as the context object spells times: 2024-01-02T03:04:05.678Z."""
    moment = _dt.datetime.fromtimestamp(seconds, _dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
