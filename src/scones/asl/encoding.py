"""JSON text of payloads as Step Functions records them, and the payload size limit."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

PAYLOAD_LIMIT = 256 * 1024

encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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
