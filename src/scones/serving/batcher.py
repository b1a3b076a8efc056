"""Dynamic micro-batching: concurrent requests share one ONNX Runtime call.

One dedicated worker thread owns the model. It blocks until a request arrives, then keeps
collecting until it has ``max_batch_size`` inputs or ``max_batch_delay`` has passed since
that FIRST request arrived, so no request waits longer than the delay for company. It waits
only for company that is coming: when the server says no other request is on its way (being
read or decoded), the batch goes at once, so a lone request never pays the delay (at
concurrency 1 that was 2 ms of a 4 ms answer). Inference runs on that thread, never on the
event loop; ONNX Runtime releases the GIL while it computes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int], None]
# How many requests are on their way to submit() (read or decoded now): company worth waiting
# for. Called on the worker thread; a slightly stale answer only costs a wait within the delay.
ArrivingCount = Callable[[], int]


class BatcherClosedError(RuntimeError):
    """The batcher is stopping or stopped and takes no new work."""


class BatchClock(Protocol):
    """Time for the batch delay; injectable so tests move it by hand instead of sleeping."""

    def now(self) -> float: ...

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        """Called holding ``condition``: return after ``timeout`` seconds or when notified."""
        ...


class MonotonicClock:
    """Real time."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(timeout)


@dataclass
class _Pending:
    array: np.ndarray
    future: Future[np.ndarray]
    enqueued_at: float


class MicroBatcher:
    """Group single inputs into batches for ``predict`` on one worker thread.

    ``submit(array)`` takes one (C, H, W) input and returns a Future of its (classes,) row.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 32,
        max_batch_delay_s: float = 0.002,
        on_batch: BatchObserver | None = None,
        name: str = "scones-batcher",
        clock: BatchClock | None = None,
        arriving: ArrivingCount | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_batch_delay_s < 0:
            raise ValueError(f"max_batch_delay_s must be >= 0, got {max_batch_delay_s}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self._on_batch = on_batch
        self._clock: BatchClock = clock or MonotonicClock()
        self._arriving = arriving
        self._pending: deque[_Pending] = deque()
        self._changed = threading.Condition()  # guards _pending and _closed
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Re-check for company now (a request that was on its way will not come)."""
        with self._changed:
            self._changed.notify()

    def submit(self, array: np.ndarray) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        with self._changed:
            if self._closed:
                raise BatcherClosedError("the model worker is shutting down")
            self._pending.append(_Pending(array, future, self._clock.now()))
            self._changed.notify()
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking work, finish everything already queued, join the worker."""
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout)

    # --- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run_batch(batch)

    def _next_batch(self) -> list[_Pending] | None:
        """The next batch; None once closed and drained. Waits for company only within the
        delay after the batch's first request arrived, and not at all once closing."""
        with self._changed:
            while not self._pending:
                if self._closed:
                    return None
                self._changed.wait()
            deadline = self._pending[0].enqueued_at + self.max_batch_delay_s
            while len(self._pending) < self.max_batch_size and not self._closed:
                if self._arriving is not None and self._arriving() <= 0:
                    break  # nobody else is coming: waiting would only add latency
                remaining = deadline - self._clock.now()
                if remaining <= 0:
                    break
                self._clock.wait(self._changed, remaining)
            size = min(len(self._pending), self.max_batch_size)
            return [self._pending.popleft() for _ in range(size)]

    def _run_batch(self, batch: list[_Pending]) -> None:
        live = [item for item in batch if item.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            inputs = np.stack([item.array for item in live])
            outputs = self._predict(inputs)
        except Exception as exc:  # a model failure fails these requests, not the worker
            logger.exception("inference failed for a batch of %d", len(live))
            for item in live:
                item.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(live))
        for index, item in enumerate(live):
            item.future.set_result(outputs[index])
