"""JSON text of payloads as Step Functions records them, and the payload size limit."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import orjson

PAYLOAD_LIMIT = 256 * 1024

# The text Step Functions payloads have here: compact, non-ASCII kept. It also refuses what
# a Lambda's Python runtime cannot marshal (a UUID, an Enum, a datetime).
marshal_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# Anything orjson would spell otherwise goes to the standard library instead: subclasses,
# datetimes and dataclasses are passed through to a missing default (TypeError), and so are
# big integers, non-string keys and lone surrogates.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)
# What orjson writes for floats the standard library spells differently: 1e-05 as 0.00001,
# 1e-07 as 1e-7, NaN and Infinity as null. Text holding any of these (in a string, too) is
# written again by the standard library.
_ORJSON_MAY_DIFFER = (b"e-", b"0.0000", b"null")


def encode_json(value: Any) -> str:
    """``marshal_json(value)`` byte for byte, about ten times faster on long strings (a
    base64 image), for values built from JSON: the runtime's own payloads. A Task's
    result from a handler, which may hold any Python object, goes through ``marshal_json``."""
    try:
        data = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return marshal_json(value)
    if any(pattern in data for pattern in _ORJSON_MAY_DIFFER):
        return marshal_json(value)
    return data.decode("utf-8")


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
