"""What the runtime's hot paths promise after their speed-ups."""

from __future__ import annotations

import uuid

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


def _stdlib_text(value: object) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_payload_text_is_the_standard_library_s_byte_for_byte() -> None:
    import math
    import random
    import struct

    from scones.asl.encoding import encode_json

    rng = random.Random(5)
    floats = [0.97, 1e-05, 9.99e-05, 1e-07, 1.5e-300, 1e16, 1e22, -0.0, 2.0**60, 5e-324]
    while len(floats) < 20_000:
        value = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            floats.append(value)
    floats += [round(rng.uniform(-1e6, 1e6), rng.randint(0, 9)) for _ in range(5_000)]
    values: list[object] = [
        {"f": floats, "s": 'é \u2028 \x7f \x1f " \\ / \n', "n": None, "t": True},
        {"nan": float("nan"), "inf": [float("inf"), -float("inf")]},
        {1: "int key", None: "null key"},
        2**70,
        "\ud800 lone surrogate",
        ("tuple", 1),
        {"image": "iVBORw0KGgo" * 400, "inferences": [0.97, 0.03], "s3_key": "test/00001-a.png"},
    ]
    for value in values:
        text = encode_json(value)
        assert text == _stdlib_text(value)
    for value in floats:
        assert encode_json(value) == _stdlib_text(value), value


def test_what_a_handler_returns_is_refused_as_lambda_refuses_it() -> None:
    import enum

    from scones.asl import Resources, execute, load

    class Colour(enum.Enum):
        RED = "red"

    for odd in (uuid.uuid4(), Colour.RED):
        resources = Resources().register_lambda("odd", lambda event, context, v=odd: {"v": v})
        definition = {
            "StartAt": "T",
            "States": {
                "T": {"Type": "Task", "Resource": "arn:aws:lambda:::function:odd", "End": True}
            },
        }
        execution = execute(load(definition, resources), {}, resources)
        assert execution.status == "FAILED"
        assert execution.error == "TypeError" and "not JSON serializable" in execution.cause
