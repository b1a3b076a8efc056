"""The capture writer: SageMaker's record schema and file layout, batching, failures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from scones.errors import UsageError
from scones.serving.capture import (
    CaptureConfig,
    CaptureOption,
    CaptureWriter,
    build_capture_record,
    capture_file_key,
    format_inference_time,
    parse_capture_options,
)
from scones.store import open_store
from scones.store.base import StoreError


def test_record_schema_is_sagemakers():
    moment = datetime(2026, 11, 26, 15, 4, 5, 123456, tzinfo=UTC)
    record = build_capture_record(
        input_data=b"\x89PNG",
        input_content_type="image/png",
        output_data=b"[0.97, 0.03]",
        output_content_type="application/json",
        inference_time=moment,
        event_id="e1",
        inference_id="i1",
        custom_attributes="a=b",
    )
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "image/png",
                "mode": "INPUT",
                "data": "iVBORw==",
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": "[0.97, 0.03]",
                "encoding": "JSON",
            },
        },
        "eventMetadata": {
            "eventId": "e1",
            "inferenceTime": "2026-11-26T15:04:05.123Z",
            "inferenceId": "i1",
            "customAttributes": "a=b",
        },
        "eventVersion": "0",
    }


def test_file_key_layout():
    moment = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    key = capture_file_key("ep", "AllTraffic", moment, "abc")
    assert key == "ep/AllTraffic/2026/01/02/03/04-05-006-abc.jsonl"
    assert format_inference_time(moment) == "2026-01-02T03:04:05.006Z"


def test_options_and_names_are_validated():
    assert parse_capture_options("input, OUTPUT") == {CaptureOption.INPUT, CaptureOption.OUTPUT}
    with pytest.raises(UsageError, match="'Body'"):
        parse_capture_options("Input,Body")
    with pytest.raises(UsageError, match="'my_endpoint'"):
        CaptureConfig(endpoint_name="my_endpoint")
    with pytest.raises(UsageError, match="101"):
        CaptureConfig(sampling_percentage=101)


def _record(writer: CaptureWriter, moment: datetime, index: int) -> None:
    writer.record(
        input_data=b"img%d" % index,
        input_content_type="image/png",
        output_data=b"[1.0, 0.0]",
        inference_time=moment,
        inference_id=f"id-{index}",
    )


def test_records_are_batched_into_files_per_hour_and_flushed_on_close(tmp_path):
    store = open_store(str(tmp_path))
    writer = CaptureWriter(store, CaptureConfig(flush_interval_s=60))
    ten = datetime(2026, 11, 26, 10, 59, 59, tzinfo=UTC)
    eleven = datetime(2026, 11, 26, 11, 0, 1, tzinfo=UTC)
    for index in range(5):
        _record(writer, ten, index)
    for index in range(5, 8):
        _record(writer, eleven, index)
    assert list(store.keys()) == []  # nothing written on the request path
    writer.close()
    keys = sorted(store.keys())
    assert len(keys) == 2
    assert keys[0].startswith("scones-endpoint/AllTraffic/2026/11/26/10/59-59-000-")
    assert keys[1].startswith("scones-endpoint/AllTraffic/2026/11/26/11/00-01-000-")
    ids = [
        [
            json.loads(line)["eventMetadata"]["inferenceId"]
            for line in store.get_text(k).splitlines()
        ]
        for k in keys
    ]
    assert ids == [[f"id-{i}" for i in range(5)], [f"id-{i}" for i in range(5, 8)]]
    assert (writer.written, writer.dropped) == (8, 0)


def test_the_writer_flushes_on_its_interval(tmp_path):
    store = open_store(str(tmp_path))
    writer = CaptureWriter(store, CaptureConfig(flush_interval_s=0.05))
    _record(writer, datetime.now(UTC), 0)
    deadline = time.monotonic() + 5
    while not list(store.keys()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(list(store.keys())) == 1
    writer.close()


class FlakyStore:
    """Fails the first ``failures`` writes, then writes to a real store."""

    def __init__(self, inner, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError(f"store unavailable writing {key}")
        self.inner.put(key, data, content_type=content_type)

    def uri_for(self, key: str) -> str:
        return self.inner.uri_for(key)


def test_a_failed_write_is_retried_then_succeeds(tmp_path):
    store = FlakyStore(open_store(str(tmp_path)), failures=1)
    writer = CaptureWriter(store, CaptureConfig(flush_interval_s=60))  # type: ignore[arg-type]
    for index in range(3):
        _record(writer, datetime.now(UTC), index)
    writer.flush()  # fails, kept for retry
    assert (writer.written, writer.dropped) == (0, 0)
    writer.close()  # retried
    assert (writer.written, writer.dropped) == (3, 0)


def test_a_store_that_keeps_failing_drops_and_counts(tmp_path, caplog):
    dropped: list[int] = []
    store = FlakyStore(open_store(str(tmp_path)), failures=100)
    writer = CaptureWriter(
        store,  # type: ignore[arg-type]
        CaptureConfig(flush_interval_s=60, max_write_attempts=2),
        on_dropped=dropped.append,
    )
    for index in range(4):
        _record(writer, datetime.now(UTC), index)
    writer.flush()
    writer.close()
    assert (writer.written, writer.dropped) == (0, 4) and sum(dropped) == 4
    assert "store unavailable" in caplog.text


def test_a_full_queue_drops_instead_of_growing(tmp_path):
    writer = CaptureWriter(
        open_store(str(tmp_path)), CaptureConfig(flush_interval_s=60, max_queued_records=2)
    )
    for index in range(5):
        _record(writer, datetime.now(UTC), index)
    writer.close()
    assert (writer.written, writer.dropped) == (2, 3)


def test_sampling_percentage_decides_per_request(tmp_path):
    draws = iter([0.10, 0.49, 0.50, 0.99])  # a fake random source: 0.0 <= x < 1.0
    writer = CaptureWriter(
        open_store(str(tmp_path)),
        CaptureConfig(sampling_percentage=50.0, flush_interval_s=60),
        sampler=lambda: next(draws),
    )
    assert [writer.should_sample() for _ in range(4)] == [True, True, False, False]
    writer.close()
    never = CaptureWriter(open_store(str(tmp_path)), CaptureConfig(sampling_percentage=0.0))
    assert not any(never.should_sample() for _ in range(100))
    never.close()
