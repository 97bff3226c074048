"""One way to call an outside system (Proxmox, Guacamole, Moodle, SMTP): how its failures are sorted,
tried again and worded.

Each client's errors derive from these: a TransientError is worth trying again (a timeout, a host
out of reach, contention), a PermanentOutsideError is not (a rejected request, an untrusted
certificate) and, being a PermanentError, fails its Task at once. `retried` tries a transient one
again inside the call, then the queue's retries take over. Every message is masked when the error
is made, so a secret an outside system echoes back reaches neither a log line nor a Task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, wait_exponential

from openvle.clients.tls import untrusted, untrusted_message
from openvle.errors import PermanentError
from openvle.logs import mask
from openvle.settings import get_settings

log = logging.getLogger("openvle.outside")

F = TypeVar("F", bound=Callable[..., Any])

ATTEMPTS = 3  # tries of one call, 0.5 s then 1 s apart; the queue's retries come after


def masked(text: str) -> str:
    """`text` without the secrets the settings hold (tokens, passwords, URL passwords)."""
    secrets = sorted(get_settings().secrets(), key=len, reverse=True)  # a secret holding another goes whole
    return mask(text, secrets)


class OutsideError(Exception):
    """A call to an outside system failed: `system` names it, `message` says what went wrong (masked)."""

    system = "an outside system"

    def __init__(self, message: str):
        self.message = masked(message)
        super().__init__(self.message)


class TransientError(OutsideError):
    """Worth trying again: contention, a timeout, the system or the network briefly away."""


class PermanentOutsideError(OutsideError, PermanentError):
    """Trying again cannot help: the Task fails at once with this message."""


def retried(what: str | Callable[..., str], not_for: tuple[type[BaseException], ...] = ()) -> Callable[[F], F]:
    """The in-call retry policy as a decorator: a TransientError (but not the kinds in `not_for`) is
    tried again, ATTEMPTS tries in all; anything else, and the last try's error, is raised as it is.
    `what` names the call in the log line of each retry: a text, or a function of the call's arguments."""

    def worth_retrying(exc: BaseException) -> bool:
        return isinstance(exc, TransientError) and not isinstance(exc, not_for)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception()
        call = what if isinstance(what, str) else what(*state.args, **state.kwargs)
        log.warning("%s: %s failed (attempt %d/%d), trying again in %.1f s: %s", exc.system, call,
                    state.attempt_number, ATTEMPTS, state.next_action.sleep, exc.message)

    return retry(retry=retry_if_exception(worth_retrying), stop=stop_after_attempt(ATTEMPTS),
                 wait=wait_exponential(multiplier=0.5, max=4), before_sleep=before_sleep, reraise=True)


def http_failure(exc: httpx.TransportError, url: str, prefix: str, transient: type[TransientError],
                 permanent: type[PermanentOutsideError], during: str | None = None) -> OutsideError:
    """What an httpx request that got no answer means. A timeout or a host out of reach is transient;
    a certificate not trusted is permanent (retrying never helps: the operator must name the CA).
    `prefix` names the settings (<prefix>_TIMEOUT, <prefix>_VERIFY_SSL), `during` the call that timed out."""
    system = transient.system
    if isinstance(exc, httpx.TimeoutException):
        return transient(f"{system} did not answer{f' {during}' if during else ''} in time ({prefix}_TIMEOUT)")
    if (cert_error := untrusted(exc)) is not None:
        return permanent(untrusted_message(system, url, f"{prefix}_VERIFY_SSL", cert_error))
    return transient(f"cannot reach {system}: {type(exc).__name__}")
