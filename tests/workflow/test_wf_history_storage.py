"""The compact history storage and the cached traceback text round-trip exactly."""

from __future__ import annotations

import base64
import json
import random
import sys
import traceback
import zlib
from datetime import UTC, datetime

import pytest

from scones.asl.resources import format_traceback
from scones.workflow import history_codec
from scones.workflow.executions import compress_history, decompress_history, to_json

IMAGE = "QUJD" * 5000  # canonical base64 of b"ABC" * 5000


def _history(image: str = IMAGE) -> list[dict]:
    payload = json.dumps({"image_data": image, "s3_key": "test/a.png"})
    result = json.dumps({"Payload": {"body": {"image_data": image, "inferences": [0.9, 0.1]}}})
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
            "taskSucceededEventDetails": {"output": result, "note": "multi\nline " * 100},
        },
        {
            "type": "ExecutionSucceeded",
            "id": 4,
            "previousEventId": 3,
            "executionSucceededEventDetails": {"output": "{}"},
        },
    ]


def _format_2(events: list[dict]) -> bytes:
    """A history as the previous release stored it (format 2), to check it still reads."""
    skeleton, refs, lines = [], [], {}
    for index, event in enumerate(events):
        for key, details in event.items():
            if type(details) is not dict:
                continue
            moved = None
            for field, value in details.items():
                if type(value) is str and len(value) >= 128 and "\n" not in value:
                    line = lines.setdefault(value, len(lines))
                    refs.append([index, key, field, line])
                    moved = moved or dict(details)
                    moved[field] = None
            if moved is not None:
                event = {**event, key: moved}
        skeleton.append(event)
    head = to_json({"events": skeleton, "payloads": refs})
    return zlib.compress("\n".join([head, *lines]).encode("utf-8"), 3)


# A history as format 3 (zlib, the image cut out and stored as bytes) wrote it: the blob of
# _history("QUJD" * 130) with a "multi\nline" note and a timestamp on the first event, as
# written by scones before format 4. Its tail is the image's decoded bytes.
_FORMAT_3_HEAD = base64.b64decode(
    "A1hHhZLBboJAEIY99ynIXLvaBayJ3JrUQ29N9EaJWWFqNsJCYDC1hHfvLFWsxGpCSNj92e/bmWkA92iogiBsgA4F"
    "QgCLL4xr0rlZkioJExCgEwhcAUWJe53X1cL+88ZrUgAO0t3eK5LSKZ/agDZFTV2yzFN8KQ0TFL9bAaQzrEhlBS95"
    "0puNXW8s/ZWcB1LyM3E9f/o8e+w+ON8LrlS1YzfChSEse0HviiBLM6FPDuWMyuyNl1hqlepvtFc9+rZDYB3HiElP"
    "86/Q2ICs2yk6xOU1nYphcrLkrE5Jf5hUG4S/xHMPBtjpFSyrnLtwjw1Ny6SIj1GHNFeJbX14r4+nsggZifBWTS+C"
    "N8sh4FgN4UZsU9amM4ENCH8uo6h94NnJ1BbXiSIFgQMjOQLhQOWvd3iwC8TT86QmhdmCTb//Xoh3GtjkiY38c4Q2"
    "nzw3JkZGOqGczIXD0xa1bfsDUkMFdw=="
)
_FORMAT_3 = _FORMAT_3_HEAD + b"ABC" * 130


def _format_3_events() -> list[dict]:
    events = _history("QUJD" * 130)
    events[2]["taskSucceededEventDetails"]["note"] = "multi\nline"
    events[0] = {"timestamp": "2026-12-03T09:00:00.123456+00:00", **events[0]}
    return events


def _random_image(size: int = 3000) -> str:
    """Base64 of random bytes: an image zstd cannot shrink much, unlike a repeated pattern."""
    return base64.b64encode(random.Random(4).randbytes(size)).decode("ascii")


def test_history_round_trips_and_stores_each_payload_once_compressed() -> None:
    image = _random_image()
    events = _history(image)
    blob = compress_history(events)
    assert blob[:1] == b"\x04"
    assert decompress_history(blob) == events
    # The image is in three events (two distinct payloads): stored once, in less room than
    # its base64 text takes.
    assert len(blob) < len(image)


def test_older_formats_still_read() -> None:
    events = _history()
    assert decompress_history(zlib.compress(json.dumps(events).encode())) == events  # 1
    assert decompress_history(_format_2(events)) == events  # 2
    assert decompress_history(_FORMAT_3) == _format_3_events()  # 3
    assert decompress_history(None) == []


def test_a_truncated_format_3_history_is_an_error() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decompress_history(_FORMAT_3[:-10])  # its image bytes cut short
    with pytest.raises((ValueError, zlib.error)):
        decompress_history(_FORMAT_3_HEAD[:-10])


def test_the_events_read_back_are_the_ones_the_previous_format_gave() -> None:
    events = _history()
    assert decompress_history(compress_history(events)) == decompress_history(_format_2(events))


def test_values_orjson_would_not_read_back_take_the_standard_library_s_path() -> None:
    # The head is written by orjson; a null, a NaN, a big integer or a string subclass in an
    # event goes through the standard library, and everything reads back as it was.
    class Name(str):
        pass

    for odd in (None, float("inf"), 2**70, Name("x"), 1e-07, {"nested": [None, 0.5]}):
        events = _history()
        events[1]["odd"] = {"value": odd}
        assert decompress_history(compress_history(events)) == events
    events = _history()
    events[1]["odd"] = {"value": float("nan")}
    back = decompress_history(compress_history(events))
    assert json.dumps(back) == json.dumps(events)


def test_timestamps_are_stored_as_iso_text_and_returned_as_read_back() -> None:
    moment = datetime(2026, 12, 2, 19, 45, 3, 120, tzinfo=UTC)
    events = [{**event, "timestamp": moment} for event in _history()]
    blob, stored = history_codec.encode_history(events)
    assert [event["timestamp"] for event in stored] == ["2026-12-02T19:45:03.000120+00:00"] * 4
    assert decompress_history(blob) == stored
    assert events[0]["timestamp"] is moment  # the caller's events are left as they were


def test_every_kind_of_timestamp_is_stored_as_the_same_iso_text() -> None:
    # orjson leaves out a zero microsecond field, and does not convert other zones: those
    # take isoformat's path, so the stored text is always the fixed-width UTC form.
    from datetime import timedelta, timezone

    moments = [
        datetime(2026, 12, 3, 9, 0, 0, 0, tzinfo=UTC),  # microsecond 0
        datetime(2026, 12, 3, 9, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 12, 3, 10, 0, 0, 5, tzinfo=timezone(timedelta(hours=1))),  # not UTC
        "2026-12-03T09:00:00.000007+00:00",  # text already
    ]
    events = [
        {**event, "timestamp": moment} for event, moment in zip(_history(), moments, strict=True)
    ]
    blob, stored = history_codec.encode_history(events)
    assert [event["timestamp"] for event in stored] == [
        "2026-12-03T09:00:00.000000+00:00",
        "2026-12-03T09:00:00.999999+00:00",
        "2026-12-03T09:00:00.000005+00:00",
        "2026-12-03T09:00:00.000007+00:00",
    ]
    assert decompress_history(blob) == stored
    zeros = [{**event, "timestamp": moments[0]} for event in _history()]  # all UTC: orjson
    assert {event["timestamp"] for event in history_codec.encode_history(zeros)[1]} == {
        "2026-12-03T09:00:00.000000+00:00"
    }


def test_a_corrupt_history_is_a_value_error_naming_it() -> None:
    blob = bytearray(compress_history(_history(_random_image())))
    blob[len(blob) // 2 :] = bytes(len(blob) - len(blob) // 2)  # its second half zeroed
    with pytest.raises(ValueError, match=r"corrupt history|truncated"):
        decompress_history(bytes(blob))


@pytest.mark.parametrize(
    "image",
    [
        IMAGE,
        "QR==" + "QUJD" * 300,  # not canonical base64 (trailing bits)
        "QUJD" * 300 + "QQ==",  # canonical with padding
        "é" * 600,  # not ASCII
        'a\\"b' * 300,  # escapes inside the string
        "x" * 511,  # one character short of what format 3 set apart
    ],
)
def test_any_long_string_round_trips_exactly(image: str) -> None:
    events = _history(image)
    assert decompress_history(compress_history(events)) == events


def test_histories_with_nul_characters_round_trip() -> None:
    events = _history("\x00" + "QUJD" * 300)
    events[1]["stateEnteredEventDetails"]["cause"] = "a\x00b" * 200
    assert decompress_history(compress_history(events)) == events


def test_random_payload_lines_round_trip() -> None:
    rng = random.Random(18)
    alphabet = 'AB"\\\x00é\n{}:,'
    for _ in range(200):
        shared = "".join(rng.choice("QUJDxyz") for _ in range(rng.randint(500, 1500)))
        details = {}
        for number in range(rng.randint(1, 6)):
            parts = [
                rng.choice([shared, shared[: rng.randint(0, 600)], ""])
                + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                for _ in range(rng.randint(1, 4))
            ]
            details[f"field{number}"] = '"'.join(parts)
        events = [{"type": "TaskSucceeded", "id": 1, "taskSucceededEventDetails": details}]
        assert decompress_history(compress_history(events)) == events


def test_a_truncated_history_is_an_error_not_a_shorter_history() -> None:
    blob = compress_history(_history(_random_image()))
    for cut in (1, 10, len(blob) // 2):
        with pytest.raises(ValueError, match=r"truncated|corrupt"):
            decompress_history(blob[:-cut])


def test_a_history_with_bytes_after_its_end_is_an_error() -> None:
    blob = compress_history(_history())
    with pytest.raises(ValueError, match="after its end"):
        decompress_history(blob + b"\x00")


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
