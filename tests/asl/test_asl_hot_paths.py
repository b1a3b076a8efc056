"""What the runtime's hot paths promise after their speed-ups."""

from __future__ import annotations

import json
import random
import struct
import uuid
from collections.abc import Callable

from scones.asl.encoding import encode_json
from scones.asl.resources import new_request_id


def test_lambda_request_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for text in ids[:50]:
        value = uuid.UUID(text)
        assert value.version == 4 and value.variant == uuid.RFC_4122 and str(value) == text


def test_the_execution_start_time_is_in_the_context_object() -> None:
    from scones.asl import FakeClock, Resources, execute, load

    definition = {
        "StartAt": "Show",
        "States": {
            "Show": {
                "Type": "Pass",
                "Parameters": {
                    "start.$": "$$.Execution.StartTime",
                    "again.$": "$$.Execution.StartTime",
                },
                "End": True,
            }
        },
    }
    clock = FakeClock(start=1_700_000_000.25)
    execution = execute(load(definition, Resources()), {}, Resources(), clock=clock)
    assert execution.output == {
        "start": "2023-11-14T22:13:20.250Z",
        "again": "2023-11-14T22:13:20.250Z",
    }


_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _Text(str):
    pass


class _Count(int):
    pass


def _random_string(rng: random.Random) -> str:
    pools = [
        lambda: chr(rng.randrange(0x20)),  # control characters: escaped
        lambda: chr(rng.randrange(0x20, 0x80)),
        lambda: chr(rng.randrange(0x80, 0xD800)),
        lambda: chr(rng.randrange(0xE000, 0x110000)),
        lambda: chr(rng.randrange(0xD800, 0xE000)),  # a lone surrogate: orjson refuses it
        lambda: rng.choice('"\\/\u2028\u2029\x7f'),
    ]
    weights = [3, 20, 3, 3, 1, 3]
    return "".join(rng.choices(pools, weights)[0]() for _ in range(rng.randrange(12)))


def _random_float(rng: random.Random) -> float:
    kind = rng.randrange(6)
    if kind == 0:
        return struct.unpack("d", rng.randbytes(8))[0]  # any bit pattern: NaN, inf, subnormal
    if kind == 1:
        return rng.choice([0.0, -0.0, 1e-4, 9.999e-5, 1e16, 9999999999999998.0, 1e-5, 0.1])
    return rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 20)


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return _random_string(rng)
    if kind == 1:
        return rng.choice([True, False, None])
    if kind == 2:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1])
    if kind == 3:
        return rng.randint(-(10**30), 10**30)
    if kind in (4, 5):
        return _random_float(rng)
    if kind == 6:
        return _Text("sub") if rng.random() < 0.5 else _Count(3)
    if kind == 7:
        return rng.choice([(1, "a"), {1: "int key"}, {None: 0}, {2.5: "float key"}])
    if kind in (8, 9):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_random_string(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _outcome(fn: Callable[[], object]) -> object:
    try:
        return ("value", fn())
    except (TypeError, ValueError) as exc:  # what the standard library raises, as a kind
        return ("error", type(exc).__name__)


def test_payload_text_is_the_standard_library_s_byte_for_byte() -> None:
    # orjson writes it where it spells a value alike; every other value, and every value
    # orjson refuses, must come out (or fail) exactly as the standard library's text.
    rng = random.Random(18)
    for _ in range(20_000):
        value = _random_value(rng)
        assert _outcome(lambda value=value: encode_json(value)) == _outcome(
            lambda value=value: _STDLIB(value)
        ), value


def test_a_deeply_nested_payload_still_gets_the_standard_library_s_text() -> None:
    value: object = "leaf"
    for _ in range(300):  # deeper than orjson's limit of 255
        value = [value]
    assert encode_json(value) == _STDLIB(value)
