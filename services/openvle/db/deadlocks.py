"""Transactions InnoDB rolled back as a deadlock victim are tried again, with one WARNING line each.

Workers starting together (compose starts every replica at once) and horses closing attempts of
chained Tasks write the same rows and index pages; InnoDB then rolls one transaction back with 1213
(deadlock) or 1205 (lock wait timeout). Trying the transaction again is MariaDB's own advice, so a
retried deadlock is no error: one WARNING line without a traceback. Only when the tries run out does
the exception reach the caller (which logs it as the failure it then is).
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_random

log = logging.getLogger("openvle.db")

RETRIED = {1205: "lock wait timeout", 1213: "deadlock"}  # MariaDB/MySQL error codes
TRIES = 5


def error_code(exc: BaseException) -> int | None:
    if not isinstance(exc, OperationalError):
        return None
    code = getattr(exc.orig, "args", (None,))[0]
    return code if isinstance(code, int) else None


def is_deadlock(exc: BaseException) -> bool:
    return error_code(exc) in RETRIED


def retry_deadlocks(what: str):
    """Decorate a function that runs (and commits) one whole transaction: it runs again on a deadlock."""

    def say_so(state: RetryCallState) -> None:
        code = error_code(state.outcome.exception())
        log.warning("%s: MariaDB %s (%s) rolled the transaction back; trying again (try %d of %d)",
                    what, RETRIED[code], code, state.attempt_number + 1, TRIES)

    return retry(retry=retry_if_exception(is_deadlock), stop=stop_after_attempt(TRIES),
                 wait=wait_random(0.05, 0.5), before_sleep=say_so, reraise=True)
