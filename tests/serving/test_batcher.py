"""The micro-batcher: grouping, the delay bound, failures, shutdown.

No test sleeps or reads the wall clock: the worker is held with events and the batch delay
runs on a clock the test moves by hand.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from batch_clock import HANG_S, HandClock

from scones.serving.batcher import BatcherClosedError, MicroBatcher


def doubling(calls: list[int]):
    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :2] * 2

    return predict


def one(value: float = 1.0) -> np.ndarray:
    return np.full((1, 2, 2), value, np.float32)


def test_requests_queued_together_share_one_call():
    calls: list[int] = []
    in_predict = threading.Event()
    gate = threading.Event()
    predict = doubling(calls)

    def slow_first(batch: np.ndarray) -> np.ndarray:
        in_predict.set()
        assert gate.wait(HANG_S)  # hold the worker so the next requests queue up behind
        return predict(batch)

    batcher = MicroBatcher(slow_first, max_batch_size=8, max_batch_delay_s=0.0)
    first = batcher.submit(one(1.0))
    assert in_predict.wait(HANG_S)  # the first is alone in its batch, being predicted
    rest = [batcher.submit(one(float(i))) for i in range(2, 12)]
    gate.set()
    assert first.result(HANG_S).tolist() == [2.0, 2.0]
    for i, future in enumerate(rest, start=2):
        assert future.result(HANG_S).tolist() == [2.0 * i, 2.0 * i]  # each gets its own row
    batcher.close()
    assert calls == [1, 8, 2]  # capped at max_batch_size


def test_a_lone_request_waits_the_delay_and_no_longer():
    calls: list[int] = []
    clock = HandClock()
    batcher = MicroBatcher(doubling(calls), max_batch_size=64, max_batch_delay_s=0.2, clock=clock)
    future = batcher.submit(one())
    clock.wait_for_waits(1)
    clock.advance(0.15)
    clock.wait_for_waits(2)  # woke, found time left, waits again
    assert not future.done() and calls == []
    clock.advance(0.05)  # the delay is over: it goes alone
    assert future.result(HANG_S).tolist() == [2.0, 2.0]
    assert calls == [1]
    batcher.close()


def test_a_request_within_the_delay_joins_the_batch_then_the_next_starts_anew():
    calls: list[int] = []
    clock = HandClock()
    batcher = MicroBatcher(doubling(calls), max_batch_size=64, max_batch_delay_s=0.2, clock=clock)
    first = batcher.submit(one(1.0))
    clock.wait_for_waits(1)
    clock.advance(0.1)
    clock.wait_for_waits(2)  # woke, found time left, waits again
    second = batcher.submit(one(2.0))  # within the first's delay
    clock.wait_for_waits(3)  # woken by the submit: still time left, and room in the batch
    assert calls == []
    clock.advance(0.1)  # the FIRST request's delay is over; the second does not extend it
    assert first.result(HANG_S).tolist() == [2.0, 2.0]
    assert second.result(HANG_S).tolist() == [4.0, 4.0]
    assert calls == [2]
    third = batcher.submit(one(3.0))  # a new batch, with its own delay
    clock.wait_for_waits(4)
    assert not third.done()
    clock.advance(0.2)
    assert third.result(HANG_S).tolist() == [6.0, 6.0]
    assert calls == [2, 1]
    batcher.close()


def test_a_full_batch_goes_without_waiting_for_the_delay():
    calls: list[int] = []
    clock = HandClock()
    in_predict = threading.Event()
    gate = threading.Event()
    predict = doubling(calls)

    def held(batch: np.ndarray) -> np.ndarray:
        in_predict.set()
        assert gate.wait(HANG_S)
        return predict(batch)

    batcher = MicroBatcher(held, max_batch_size=4, max_batch_delay_s=1000.0, clock=clock)
    futures = [batcher.submit(one()) for _ in range(4)]
    gate.set()
    assert in_predict.wait(HANG_S)  # the clock never moved: the batch was full
    assert all(f.result(HANG_S).tolist() == [2.0, 2.0] for f in futures)
    assert calls == [4]
    batcher.close()


def test_a_failing_model_fails_that_batch_only():
    def predict(batch: np.ndarray) -> np.ndarray:
        if (batch < 0).any():
            raise RuntimeError("model exploded")
        return batch.reshape(len(batch), -1)[:, :2]

    batcher = MicroBatcher(predict, max_batch_size=1, max_batch_delay_s=0.0)
    bad = batcher.submit(-one())
    with pytest.raises(RuntimeError, match="model exploded"):
        bad.result(HANG_S)
    assert batcher.submit(one()).result(HANG_S).tolist() == [1.0, 1.0]
    batcher.close()


def test_close_finishes_queued_work_at_once_and_refuses_new():
    calls: list[int] = []
    clock = HandClock()  # never advanced: closing must not wait out the delay
    batcher = MicroBatcher(doubling(calls), max_batch_size=4, max_batch_delay_s=1000.0, clock=clock)
    futures = [batcher.submit(one()) for _ in range(10)]
    batcher.close(timeout=HANG_S)
    assert all(f.done() and f.result().tolist() == [2.0, 2.0] for f in futures)
    assert sum(calls) == 10 and max(calls) <= 4
    with pytest.raises(BatcherClosedError):
        batcher.submit(one())


@pytest.mark.parametrize(("size", "delay"), [(0, 0.0), (1, -1.0)])
def test_invalid_settings_are_refused(size, delay):
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(doubling([]), max_batch_size=size, max_batch_delay_s=delay)


def test_a_lone_request_goes_at_once_when_no_other_is_on_its_way():
    calls: list[int] = []
    clock = HandClock()  # never advanced: only "nobody is coming" can release the batch
    batcher = MicroBatcher(
        doubling(calls), max_batch_size=64, max_batch_delay_s=1000.0, clock=clock,
        arriving=lambda: 0,
    )  # fmt: skip
    assert batcher.submit(one()).result(HANG_S).tolist() == [2.0, 2.0]
    assert calls == [1]
    batcher.close()


def test_it_waits_for_requests_on_their_way_and_goes_when_the_last_arrives_or_gives_up():
    calls: list[int] = []
    clock = HandClock()  # never advanced
    on_the_way = [2]
    batcher = MicroBatcher(
        doubling(calls), max_batch_size=64, max_batch_delay_s=1000.0, clock=clock,
        arriving=lambda: on_the_way[0],
    )  # fmt: skip
    first = batcher.submit(one(1.0))
    clock.wait_for_waits(1)  # two more are being decoded: worth waiting for
    on_the_way[0] = 1
    second = batcher.submit(one(2.0))
    clock.wait_for_waits(2)  # one is still coming
    assert calls == [] and not first.done()
    on_the_way[0] = 0  # the last one failed to decode: it will never be submitted
    batcher.wake()
    assert first.result(HANG_S).tolist() == [2.0, 2.0]
    assert second.result(HANG_S).tolist() == [4.0, 4.0]
    assert calls == [2]
    batcher.close()
