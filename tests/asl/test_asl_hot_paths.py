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
