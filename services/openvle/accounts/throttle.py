"""Failed logins are slowed, then refused for a while, per account and per address (in Redis, so
every backend replica counts the same failures).

From the 3rd failure in a row an account must wait 1, 2, 4 … (at most 60) seconds before the next
try; at LOGIN_MAX_FAILURES it is refused for LOGIN_LOCKOUT_MINUTES. An address gets the same with
LOGIN_MAX_FAILURES_PER_ADDRESS (a whole classroom may share one address). The same applies to
names that have no account, so the answer never tells whether one exists.
"""

from __future__ import annotations

import math
import time

from openvle.connections import get_redis
from openvle.settings import get_settings

SLOW_FROM = 3
MAX_WAIT = 60
clock = time.time  # tests move time instead of sleeping


class Refused(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins: try again in {retry_after} s")
        self.retry_after = retry_after


def _keys(login: str, address: str | None) -> list[tuple[str, int]]:
    settings = get_settings()
    keys = [(f"openvle:login-failures:account:{login.strip().lower()}", settings.LOGIN_MAX_FAILURES)]
    if address:
        keys.append((f"openvle:login-failures:address:{address}", settings.LOGIN_MAX_FAILURES_PER_ADDRESS))
    return keys


def check(login: str, address: str | None) -> None:
    """Raise Refused when this login (or this address) must wait before trying again."""
    redis = get_redis()
    lockout = get_settings().LOGIN_LOCKOUT_MINUTES * 60
    now = clock()
    wait = 0.0
    for key, limit in _keys(login, address):
        state = redis.hgetall(key)
        if not state:
            continue
        count, last = int(state.get(b"count", 0)), float(state.get(b"last", 0))
        if count >= limit:
            wait = max(wait, last + lockout - now)
        elif count >= SLOW_FROM and key.split(":")[2] == "account":
            wait = max(wait, last + min(2 ** (count - SLOW_FROM), MAX_WAIT) - now)
    if wait > 0:
        raise Refused(math.ceil(wait))


def failed(login: str, address: str | None) -> None:
    redis = get_redis()
    lockout = get_settings().LOGIN_LOCKOUT_MINUTES * 60
    with redis.pipeline() as pipe:
        for key, _ in _keys(login, address):
            pipe.hincrby(key, "count", 1)
            pipe.hset(key, "last", clock())
            pipe.expire(key, lockout)  # quiet for a lockout's length: forgotten
        pipe.execute()


def succeeded(login: str) -> None:
    """A right password clears the account's count (not the address's: one success in a spray
    must not reset it)."""
    get_redis().delete(_keys(login, None)[0][0])
