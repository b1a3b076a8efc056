"""Dynamic micro-batching: concurrent requests share one ONNX Runtime call.

One dedicated worker thread owns the model. It blocks until a request arrives, then keeps
collecting until it has ``max_batch_size`` inputs or ``max_batch_delay`` has passed since
that FIRST request arrived, so no request waits longer than the delay for company. Inference
runs on that thread, never on the event loop; ONNX Runtime releases the GIL while it computes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int], None]


class BatcherClosedError(RuntimeError):
    """The batcher is stopping or stopped and takes no new work."""


@dataclass
class _Pending:
    array: np.ndarray
    future: Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.monotonic)


_STOP = object()


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
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_batch_delay_s < 0:
            raise ValueError(f"max_batch_delay_s must be >= 0, got {max_batch_delay_s}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, array: np.ndarray) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model worker is shutting down")
            self._queue.put(_Pending(array, future))
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking work, finish everything already queued, join the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    # --- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Pending)
            batch = [first]
            deadline = first.enqueued_at + self.max_batch_delay_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    # Take what is already queued without waiting; wait only within the delay.
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _Pending)
                batch.append(item)
            self._run_batch(batch)
        # Anything still queued after the stop marker (none, as submit refuses after close).
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Pending):
                self._run_batch([item])

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
