"""Time sources: the real one, and a hand-driven one for in-process tests."""

from __future__ import annotations

import threading
import time


class Clock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock(Clock):
    """Moves only when told to, so task outcomes can be checked without sleeping."""

    def __init__(self, start: float = 1_750_000_000.0):
        self._lock = threading.Lock()
        self._now = 1000.0
        self._epoch = start - self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._epoch + self._now
