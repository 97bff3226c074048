"""A store's host name that failed to resolve "for now" is looked up again for a few seconds.

getaddrinfo's EAI_AGAIN ("Temporary failure in name resolution") says the answer may come if asked
again: a container network's DNS (podman's aardvark-dns) drops queries while it reloads as a
container starts or stops. Without this, a CLI command run at that moment fails at once; a role
would wait anyway (stores.py), but only after saying the store is away. A name that does not exist
(EAI_NONAME) or a refused connection is not tried again here: it is reported at once.
"""

from __future__ import annotations

import socket

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

# Long enough for a DNS server's reload (well under a second), short enough not to hide an outage.
FOR_NOW_SECONDS = 10.0
_FIRST_WAIT, _LONGEST_WAIT = 0.1, 1.0


def failed_for_now(exc: BaseException) -> bool:
    """The lookup of a host name failed with "try again", as raised or as a client wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return exc.errno == socket.EAI_AGAIN
        # PyMySQL keeps the socket error on its OperationalError; other clients chain it.
        exc = getattr(exc, "original_exception", None) or exc.__cause__ or exc.__context__
    return False


def retrying() -> Retrying:
    """tenacity's policy for a connect whose host name failed for now (any other error is raised)."""
    return Retrying(retry=retry_if_exception(failed_for_now), stop=stop_after_delay(FOR_NOW_SECONDS),
                    wait=wait_exponential(multiplier=_FIRST_WAIT, max=_LONGEST_WAIT), reraise=True)


def redis_retry() -> Retry:
    """redis-py's own retry, limited to that lookup: redis-py raises it as a ConnectionError caused by
    the socket's error, on a connect or on a command that connects; every other error is raised at once."""
    tries = 0
    waited = 0.0
    backoff = ExponentialBackoff(cap=_LONGEST_WAIT, base=_FIRST_WAIT)
    while waited < FOR_NOW_SECONDS:
        tries += 1
        waited += backoff.compute(tries)
    return Retry(backoff, tries, supported_errors=(RedisConnectionError,), is_retryable=failed_for_now)
