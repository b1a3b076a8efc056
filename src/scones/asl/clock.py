"""Injectable time: Wait states, retry intervals and timeouts go through a Clock."""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """now() is epoch seconds; sleep() blocks (or pretends to) for that long."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    real = True

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Advances instantly: sleep() moves time forward and returns at once.

    Thread-safe, because Parallel branches and Map iterations sleep concurrently.
    `sleeps` records every requested sleep so tests can assert on retry intervals.
    """

    real = False

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


def is_real(clock: Clock) -> bool:
    """Real clocks need real waiting (threads) to enforce timeouts; fake ones do not."""
    return bool(getattr(clock, "real", False))
