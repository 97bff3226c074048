"""Exact fault plans the simulators share: faults a test can count on, not rates it must hope for.

`error_every=n` fails the n-th, 2n-th, 3n-th … request after the plan is set, whatever order
concurrent clients send them in: a run of N requests meets exactly N // n injected errors, and no
two consecutive requests fail when n >= 2.
"""

from __future__ import annotations

import threading


class EveryNth:
    """Counts requests since `set()` and says which of them the plan hits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.every = 0
        self.seen = 0
        self.hits = 0

    def set(self, every: int) -> int:
        every = int(every)
        if every < 0:
            raise ValueError("error_every must be >= 0 (0: off)")
        with self._lock:
            self.every, self.seen, self.hits = every, 0, 0
        return every

    def hit(self) -> bool:
        with self._lock:
            if not self.every:
                return False
            self.seen += 1
            if self.seen % self.every:
                return False
            self.hits += 1
            return True
