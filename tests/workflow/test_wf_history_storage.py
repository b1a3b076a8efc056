"""The compact history storage and the cached traceback text round-trip exactly."""

from __future__ import annotations

import json
import sys
import traceback
import zlib

from scones.asl.resources import format_traceback
from scones.workflow.executions import compress_history, decompress_history


def _history() -> list[dict]:
    payload = json.dumps({"image_data": "QUJD" * 5000, "s3_key": "test/a.png"})
    return [
        {
            "type": "ExecutionStarted",
            "id": 1,
            "previousEventId": 0,
            "executionStartedEventDetails": {"input": payload, "roleArn": "arn"},
        },
        {
            "type": "TaskStateEntered",
            "id": 2,
            "previousEventId": 1,
            "stateEnteredEventDetails": {"name": "Serialize", "input": payload},
        },
        {
            "type": "TaskSucceeded",
            "id": 3,
            "previousEventId": 2,
            "taskSucceededEventDetails": {"output": payload, "note": "multi\nline " * 100},
        },
        {
            "type": "ExecutionSucceeded",
            "id": 4,
            "previousEventId": 3,
            "executionSucceededEventDetails": {"output": "{}"},
        },
    ]


def test_history_round_trips_and_stores_each_payload_once() -> None:
    events = _history()
    blob = compress_history(events)
    assert decompress_history(blob) == events
    text = zlib.decompress(blob).decode()
    assert text.count("QUJD" * 5000) == 1


def test_version_one_histories_still_read() -> None:
    events = _history()
    assert decompress_history(zlib.compress(json.dumps(events).encode())) == events
    assert decompress_history(None) == []


def _recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("bottom")
    _recurse(depth - 1)


def test_format_traceback_matches_the_standard_library() -> None:
    for depth in (0, 3, 50):
        try:
            _recurse(depth)
        except ValueError:
            tb = sys.exc_info()[2]
            assert format_traceback(tb) == traceback.format_tb(tb)
            assert format_traceback(tb) == traceback.format_tb(tb)  # the cached path too
