"""A batch clock that tests move by hand, so batching is tested without sleeps or timing."""

from __future__ import annotations

import threading

# A bound on real waits, only so a broken batcher fails instead of hanging the run.
HANG_S = 10.0


class HandClock:
    """A BatchClock that moves only when the test calls advance()."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Condition()
        self._conditions: set[threading.Condition] = set()
        self.waits = 0  # how often the worker began waiting for the delay

    def now(self) -> float:
        return self._now

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        with self._lock:
            self._conditions.add(condition)
            self.waits += 1
            self._lock.notify_all()
        condition.wait(HANG_S)  # woken by advance() or a submit, never by real time

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
            conditions = list(self._conditions)
        for condition in conditions:
            with condition:
                condition.notify_all()

    def wait_for_waits(self, count: int) -> None:
        """Block until the worker has begun its ``count``-th wait (it is parked in it)."""
        with self._lock:
            assert self._lock.wait_for(lambda: self.waits >= count, HANG_S), self.waits
