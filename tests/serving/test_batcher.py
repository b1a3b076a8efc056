"""The micro-batcher: grouping, the delay bound, failures, shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from scones.serving.batcher import BatcherClosedError, MicroBatcher


def doubling(calls: list[int]):
    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :2] * 2

    return predict


def test_requests_queued_together_share_one_call():
    calls: list[int] = []
    gate = threading.Event()

    def slow_first(batch: np.ndarray) -> np.ndarray:
        gate.wait(5)  # hold the worker so the next requests queue up behind the first
        return doubling(calls)(batch)

    batcher = MicroBatcher(slow_first, max_batch_size=8, max_batch_delay_s=0.0)
    first = batcher.submit(np.full((1, 2, 2), 1.0, np.float32))
    time.sleep(0.05)
    rest = [batcher.submit(np.full((1, 2, 2), float(i), np.float32)) for i in range(2, 12)]
    gate.set()
    assert first.result(5).tolist() == [2.0, 2.0]
    for i, future in enumerate(rest, start=2):
        assert future.result(5).tolist() == [2.0 * i, 2.0 * i]  # each gets its own row
    batcher.close()
    assert calls[0] == 1 and calls[1:] == [8, 2]  # capped at max_batch_size


def test_a_lone_request_is_not_held_past_the_delay():
    calls: list[int] = []
    batcher = MicroBatcher(doubling(calls), max_batch_size=64, max_batch_delay_s=0.2)
    started = time.monotonic()
    batcher.submit(np.ones((1, 2, 2), np.float32)).result(5)
    elapsed = time.monotonic() - started
    batcher.close()
    assert calls == [1]
    assert 0.19 <= elapsed < 1.5


def test_a_failing_model_fails_that_batch_only():
    def predict(batch: np.ndarray) -> np.ndarray:
        if (batch < 0).any():
            raise RuntimeError("model exploded")
        return batch.reshape(len(batch), -1)[:, :2]

    batcher = MicroBatcher(predict, max_batch_size=1, max_batch_delay_s=0.0)
    bad = batcher.submit(-np.ones((1, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match="model exploded"):
        bad.result(5)
    assert batcher.submit(np.ones((1, 2, 2), np.float32)).result(5).tolist() == [1.0, 1.0]
    batcher.close()


def test_close_finishes_queued_work_and_refuses_new():
    calls: list[int] = []
    batcher = MicroBatcher(doubling(calls), max_batch_size=4, max_batch_delay_s=0.05)
    futures = [batcher.submit(np.ones((1, 2, 2), np.float32)) for _ in range(10)]
    batcher.close()
    assert all(f.done() and f.result().tolist() == [2.0, 2.0] for f in futures)
    assert sum(calls) == 10
    with pytest.raises(BatcherClosedError):
        batcher.submit(np.ones((1, 2, 2), np.float32))


@pytest.mark.parametrize(("size", "delay"), [(0, 0.0), (1, -1.0)])
def test_invalid_settings_are_refused(size, delay):
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(doubling([]), max_batch_size=size, max_batch_delay_s=delay)
