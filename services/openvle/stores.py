"""Redis or the database away: a role waits for it, says so once, says once that it is back, goes on.

No role exits because a store is away (compose would start it again; `make dev` would not, and a
role started again costs its warm-up and its scheduler lock): the call that met the outage is tried
again (tenacity) until the store answers. The outage is process-wide, so however many calls wait
for it, the process logs one "waiting for" line and one "back" line per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential

log = logging.getLogger("openvle.stores")

T = TypeVar("T")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)
# MariaDB/MySQL client errors that mean "not reachable": can't connect (2002, 2003), server gone
# away or connection lost (2006, 2013), and the server shutting down (1053).
_DB_UNREACHABLE = {1053, 2002, 2003, 2006, 2013, 2055}


def redis_down(exc: BaseException) -> bool:
    return isinstance(exc, REDIS_DOWN)


def database_down(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    code = getattr(exc.orig, "args", (None,))[0]
    return code in _DB_UNREACHABLE


class Outage:
    """One store's outage as this process sees it: begun by the first failed call, ended by the first
    call that works again."""

    def __init__(self, store: str, setting: str):
        self.store, self.setting = store, setting
        self._since: float | None = None
        self._lock = threading.Lock()

    def begin(self, exc: BaseException | None) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        if _quiet:
            return
        detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}" if exc else ""
        log.warning("waiting for %s (%s): %s", self.store, self.setting, detail)

    def end(self) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None and not _quiet:
            log.warning("%s is back after %.0fs; going on", self.store, time.monotonic() - since)

    @property
    def away(self) -> bool:
        return self._since is not None


_quiet = False


def keep_quiet(quiet: bool = True) -> None:
    """In a process a role forks (a work horse, RQ's scheduler): it waits like its parent, which says so.
    `quiet=False`: a forked process that speaks for its role about a store (the worker's bookkeeper)."""
    global _quiet
    _quiet = quiet


REDIS = Outage("Redis", "REDIS_URL")
DATABASE = Outage("the database", "DATABASE_URL")


# Set when the process is asked to stop (SIGTERM from compose, Ctrl-C): waiting for a store that
# is away would keep it from ever stopping, so the calls give up and raise instead.
_stopping = threading.Event()
_raise_when_stopping: type[BaseException] | None = None


def stop_waiting(raise_instead: type[BaseException] | None = None) -> None:
    """The process is stopping: calls waiting for a store give up, raising `raise_instead` (e.g.
    RQ's StopRequested, so its loop ends as for any stop) or else the store's own error."""
    global _raise_when_stopping
    _raise_when_stopping = raise_instead
    _stopping.set()


def stop_requested() -> bool:
    return _stopping.is_set()


def _give_up(state: RetryCallState) -> Any:
    if _raise_when_stopping is not None:
        raise _raise_when_stopping()
    raise state.outcome.exception()


def _waiting(outage: Outage, down: Callable[[BaseException], bool]) -> Retrying:
    def say_so(state: RetryCallState) -> None:
        outage.begin(state.outcome.exception())

    return Retrying(retry=retry_if_exception(down), wait=wait_exponential(multiplier=0.25, max=2),
                    stop=lambda state: _stopping.is_set(), retry_error_callback=_give_up,
                    before_sleep=say_so, reraise=True)


def call_with_redis(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, called again until Redis answers (for as long as it takes)."""
    result = _waiting(REDIS, redis_down)(fn, *args, **kwargs)
    REDIS.end()
    return result


def call_with_database(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, called again until the database answers (for as long as it takes)."""
    result = _waiting(DATABASE, database_down)(fn, *args, **kwargs)
    DATABASE.end()
    return result


def wait_for_redis(redis=None) -> None:
    if redis is None:
        from openvle.connections import get_redis

        redis = get_redis()
    call_with_redis(redis.ping)


def wait_for_database(engine=None) -> None:
    if engine is None:
        from openvle.db.engine import get_engine

        engine = get_engine()

    def ping() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    call_with_database(ping)
