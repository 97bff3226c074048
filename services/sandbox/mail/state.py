"""The catcher's memory: caught messages, recipients to refuse and the temporary-failure window, under one lock.

Everything here is called from two threads (the SMTP event loop and the HTTP server's request threads) and
from the test thread, so every public method takes the lock and returns copies.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from ..clock import Clock

MAX_MESSAGES = 10_000  # oldest dropped beyond this, so a long `make dev` cannot grow without bound


def _addresses(addresses: Any) -> list[str]:
    if isinstance(addresses, str) or not isinstance(addresses, list | tuple | set | frozenset):
        raise ValueError("addresses must be a list of e-mail addresses")
    out = []
    for address in addresses:
        if not isinstance(address, str) or not address.strip():
            raise ValueError(f"not an e-mail address: {address!r}")
        out.append(address.strip().strip("<>").lower())
    return out


class MailState:
    """Caught messages (oldest first) plus the fault settings the SMTP side consults."""

    def __init__(self, max_messages: int = MAX_MESSAGES, clock: Clock | None = None):
        self.clock = clock or Clock()  # a FakeClock lets a test move through a failure window
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._max = max_messages
        self._next_id = 1  # never reset: an id names one message for the catcher's whole life
        self.reset()

    # ---- messages ---------------------------------------------------------------------------------------------
    def add(self, message: dict[str, Any]) -> dict[str, Any]:
        """Store a parsed message (see parse.parse_message), giving it its id; returns the stored copy."""
        with self.lock:
            stored = dict(message, id=self._next_id)
            self._next_id += 1
            self._messages.append(stored)
            del self._messages[:-self._max]
            self.stats["accepted"] += 1
            self._changed.notify_all()
            return copy.deepcopy(stored)

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        """All caught messages, newest last; `to` keeps those with that envelope or To/Cc recipient."""
        with self.lock:
            found = [m for m in self._messages if to is None or _addressed_to(m, to)]
            return copy.deepcopy(found)

    def message(self, message_id: int | str) -> dict[str, Any] | None:
        with self.lock:
            for m in self._messages:
                if str(m["id"]) == str(message_id):
                    return copy.deepcopy(m)
        return None

    def delete(self, message_id: int | str) -> bool:
        with self.lock:
            for i, m in enumerate(self._messages):
                if str(m["id"]) == str(message_id):
                    del self._messages[i]
                    return True
        return False

    def clear(self) -> int:
        """Forget the caught messages (not the fault settings); returns how many there were."""
        with self.lock:
            count = len(self._messages)
            self._messages = []
            return count

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0, to: str | None = None) -> list[dict[str, Any]]:
        """Block until at least `count` messages (to `to`, if given) are caught; returns them.

        For mail sent in the background (a worker's job); raises TimeoutError with what was caught so far."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = self.messages(to)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} messages caught within {timeout} s"
                                       + (f" for {to}" if to else ""))
                self._changed.wait(left)

    # ---- faults -----------------------------------------------------------------------------------------------
    def reject(self, addresses: list[str]) -> list[str]:
        """Answer RCPT TO for these addresses (case-insensitive) with 550 5.1.1 from now on.

        Replaces the previous list; an empty list rejects nobody. Returns the list in force."""
        with self.lock:
            self._rejected = set(_addresses(addresses))
            return sorted(self._rejected)

    def is_rejected(self, address: str) -> bool:
        with self.lock:
            return address.strip().strip("<>").lower() in self._rejected

    def set_temporary_failure(self, count: int | None = None, seconds: float | None = None) -> dict[str, Any]:
        """Answer the next `count` transactions (MAIL FROM), or every one for the next `seconds`, with
        421 4.3.2 and close the connection, as a server shedding load does. Both may be given (either one
        fails a transaction); each call replaces the previous setting; count=0 / seconds=0 end it."""
        if count is None and seconds is None:
            raise ValueError("give count or seconds")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError("count must be an integer >= 0")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                    or seconds < 0):
            raise ValueError("seconds must be a number >= 0")
        with self.lock:
            self._fail_count = count or 0
            self._fail_until = self.clock.monotonic() + seconds if seconds else None
            return self._failure_snapshot()

    def take_temporary_failure(self) -> bool:
        """Called by the SMTP side at each MAIL FROM: True if this transaction is to be answered with 421."""
        with self.lock:
            if self._fail_count > 0:
                self._fail_count -= 1
            elif self._fail_until is None or self.clock.monotonic() >= self._fail_until:
                return False
            self.stats["temporary_failures"] += 1
            return True

    def set_slow_reply(self, seconds: float, count: int = 1) -> dict[str, Any]:
        """Keep each of the next `count` messages, then wait `seconds` before answering 250 to its DATA,
        as a relay scanning content does. A client that gives up or dies meanwhile never learns that
        the message was taken: the window in which a sender cannot know, and may send it again."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a number >= 0")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an integer >= 0")
        with self.lock:
            self._slow_seconds, self._slow_count = float(seconds), count
            return self._slow_snapshot()

    def take_slow_reply(self) -> float:
        """Called by the SMTP side once a message is kept: the seconds to wait before answering (0: none)."""
        with self.lock:
            if self._slow_count <= 0 or self._slow_seconds <= 0:
                return 0.0
            self._slow_count -= 1
            self._holding += 1
            self.stats["slow_replies"] += 1
            self._changed.notify_all()
            return self._slow_seconds

    def reply_sent(self) -> None:
        with self.lock:
            self._holding -= 1

    def wait_holding(self, timeout: float = 5.0) -> None:
        """Block until a message's reply is being held back (see set_slow_reply)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self._holding <= 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply held back within {timeout} s")
                self._changed.wait(left)

    def _slow_snapshot(self) -> dict[str, Any]:
        return {"seconds": self._slow_seconds, "count": self._slow_count, "holding": self._holding}

    def count(self, stat: str) -> None:
        with self.lock:
            self.stats[stat] += 1

    # ---- admin ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """No messages, nobody rejected, no temporary failure or slow reply, counters at zero."""
        with self.lock:
            self._messages: list[dict[str, Any]] = []
            self._rejected: set[str] = set()
            self._fail_count = 0
            self._fail_until: float | None = None
            self._slow_seconds, self._slow_count, self._holding = 0.0, 0, 0
            self.stats = {"accepted": 0, "rejected_recipients": 0, "temporary_failures": 0, "auth_failures": 0,
                          "slow_replies": 0}

    def _failure_snapshot(self) -> dict[str, Any]:
        left = None if self._fail_until is None else max(0.0, round(self._fail_until - self.clock.monotonic(), 3))
        return {"active": self._fail_count > 0 or bool(left), "count": self._fail_count, "seconds_left": left}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"messages": len(self._messages), "rejected": sorted(self._rejected),
                    "temporary_failure": self._failure_snapshot(), "slow_reply": self._slow_snapshot(),
                    "stats": dict(self.stats)}


def _addressed_to(message: dict[str, Any], address: str) -> bool:
    wanted = address.strip().strip("<>").lower()
    candidates = [*message.get("rcpt_tos", []), *message.get("to", []), *message.get("cc", [])]
    return any(c.lower() == wanted for c in candidates)
