"""Reading SageMaker capture: every record, in time order, malformed input counted."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

from monitor_helpers import T0, capture_key, capture_record, minutes, write_capture_file

from conftest import noise_png, solid_png
from scones.monitor.capture_reader import (
    ReadCounters,
    iter_capture_records,
    iter_lines,
    list_capture_files,
    parse_capture_key,
    read_record_at,
)
from scones.store import open_store

RED = solid_png((200, 30, 30))


def read_all(root: Path, **window):
    store = open_store(str(root))
    counters = ReadCounters()
    files = list_capture_files(store, "scones-endpoint", counters=counters, **window)
    records = list(iter_capture_records(store, files, counters=counters, **window))
    return records, counters


def test_parse_capture_key_follows_the_sagemaker_layout():
    key = capture_key(T0)
    parsed = parse_capture_key(key, 10)
    assert parsed is not None
    assert (parsed.endpoint, parsed.variant, parsed.start) == ("scones-endpoint", "AllTraffic", T0)
    assert parse_capture_key("scones-endpoint/AllTraffic/2026/11/26/15/notes.txt") is None
    assert parse_capture_key("scones-endpoint/AllTraffic/2026/13/26/15/04-05-123-x.jsonl") is None


def test_records_of_overlapping_files_come_out_in_time_order(tmp_path):
    # Two workers wrote interleaved records into their own files, as replicas do.
    even = [capture_record(RED, [0.99, 0.01], T0 + minutes(2 * i)) for i in range(5)]
    odd = [capture_record(RED, [0.99, 0.01], T0 + minutes(2 * i + 1)) for i in range(5)]
    write_capture_file(tmp_path, odd)
    write_capture_file(tmp_path, even)
    later = [capture_record(RED, [0.5, 0.5], T0 + timedelta(hours=3))]
    write_capture_file(tmp_path, later)
    records, counters = read_all(tmp_path)
    times = [r.timestamp for r in records]
    assert len(records) == 11
    assert times == sorted(times)
    assert counters.files_read == 3
    assert records[-1].probabilities == [0.5, 0.5]


def test_malformed_lines_and_files_are_counted_not_fatal(tmp_path):
    good = [capture_record(RED, [0.99, 0.01], T0 + minutes(i)) for i in range(3)]
    no_time = capture_record(RED, [0.9, 0.1], T0)
    del no_time["eventMetadata"]["inferenceTime"]
    bad_time = capture_record(RED, [0.9, 0.1], T0)
    bad_time["eventMetadata"]["inferenceTime"] = "yesterday"
    write_capture_file(
        tmp_path,
        [good[0], "{not json", "[1, 2]", json.dumps(no_time), json.dumps(bad_time), *good[1:]],
    )
    # A file of binary junk in the capture layout, and a stray file beside the capture.
    junk = tmp_path / capture_key(T0 + minutes(1))
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"\x00\xff\xfe garbage \x89PNG\n\n")
    (tmp_path / "scones-endpoint" / "README.txt").write_text("not capture")
    records, counters = read_all(tmp_path)
    assert len(records) == 3
    report = counters.as_dict()
    assert report["malformed_lines"] == 5
    assert report["malformed_lines_by_reason"] == {
        "not JSON": 2,
        "not a JSON object": 1,
        "no eventMetadata.inferenceTime": 1,
        "eventMetadata.inferenceTime is not an ISO 8601 time": 1,
    }
    assert report["files_skipped"] == {"not a capture file (SageMaker layout)": 1}
    assert report["files_read"] == 2


def test_outputs_that_are_not_probabilities_keep_the_record(tmp_path):
    missing = capture_record(RED, None, T0)
    error_body = capture_record(RED, [0.9, 0.1], T0 + minutes(1))
    error_body["captureData"]["endpointOutput"]["data"] = '{"error": "boom"}'
    out_of_range = capture_record(RED, [1.5, -0.5], T0 + minutes(2))
    write_capture_file(tmp_path, [missing, error_body, out_of_range])
    records, _ = read_all(tmp_path)
    assert [r.output_problem for r in records] == [
        "no endpointOutput",
        "endpointOutput is not a list of probabilities",
        "endpointOutput has values outside [0, 1]",
    ]
    assert all(r.probabilities is None for r in records)


def test_since_and_until_select_records_by_inference_time(tmp_path):
    records = [capture_record(RED, [0.99, 0.01], T0 + timedelta(hours=i)) for i in range(6)]
    for record in records:
        write_capture_file(tmp_path, [record])
    selected, counters = read_all(
        tmp_path, since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=3, minutes=30)
    )
    assert [r.time for r in selected] == [T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
    assert counters.files_skipped["outside --since/--until"] >= 2


def test_an_empty_or_missing_prefix_yields_nothing(tmp_path):
    records, counters = read_all(tmp_path / "nothing-here")
    assert records == []
    assert counters.files_listed == 0


def test_lines_split_across_chunks_and_over_long_lines(monkeypatch):
    import scones.monitor.capture_reader as reader

    monkeypatch.setattr(reader, "CHUNK_BYTES", 7)
    data = b"short\n" + b"x" * 40 + b"\nafter\nlast-without-newline"
    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=20))
    assert lines == [b"short", None, b"after", b"last-without-newline"]


def test_read_record_at_finds_one_record_again(tmp_path):
    records = [capture_record(noise_png(i), [0.5, 0.5], T0 + minutes(i)) for i in range(3)]
    path = write_capture_file(tmp_path, records)
    store = open_store(str(tmp_path))
    key = path.relative_to(tmp_path).as_posix()
    found = read_record_at(store, key, 2)
    assert found.event_id == records[1]["eventMetadata"]["eventId"]
