"""One log line per happening on stdout, carrying role, queue, job id, task id and attempt k of n.

The job context lives in a ContextVar that the tracking code sets around each job, so every line a
job (or a client it calls) logs says which Task it belongs to. Secrets are masked in every line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from openvle.settings_help import mask_url


@dataclass(frozen=True)
class LogContext:
    queue: str = "-"
    job_id: str = "-"
    task_id: str = "-"
    attempt: str = "-"


_role = "-"
_context: contextvars.ContextVar[LogContext] = contextvars.ContextVar(
    "openvle_log_context", default=LogContext()  # noqa: B039 (frozen dataclass, immutable)
)


@contextmanager
def job_context(**fields: str) -> Iterator[None]:
    token = _context.set(replace(_context.get(), **{k: str(v) for k, v in fields.items()}))
    try:
        yield
    finally:
        _context.reset(token)


class _Formatter(logging.Formatter):
    def __init__(self, secrets: list[str]):
        super().__init__(
            "%(asctime)s %(levelname)s role=%(role)s queue=%(queue)s job=%(job_id)s task=%(task_id)s "
            "attempt=%(attempt)s %(name)s: %(message)s"
        )
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        import time

        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        context = _context.get()
        record.role = _role
        record.queue = getattr(record, "queue", None) or context.queue
        record.job_id = context.job_id
        record.task_id = context.task_id
        record.attempt = context.attempt
        line = super().format(record)
        return mask(line, self._secrets).replace("\n", " | ")  # one record, one line


# A one-time link's token in a logged URL (uvicorn's access log of GET /set-password?token=…).
_QUERY_SECRET = re.compile(r"([?&](?:token|password|csrf_token)=)[^&\s\"']+")


def mask(text: str, secrets: list[str]) -> str:
    text = _QUERY_SECRET.sub(r"\1********", mask_url(text))
    for secret in secrets:
        text = text.replace(secret, "********")
    return text


def setup(role: str, level: str = "INFO", secrets: list[str] | None = None) -> None:
    """Route every logger (ours, RQ's, uvicorn's) to one stdout handler with our format."""
    global _role
    _role = role
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter(secrets or []))
    handler.addFilter(_PoolLostConnection())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("rq", "rq.worker", "rq.scheduler", "rq.cron", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    rq_worker = logging.getLogger("rq.worker")
    if not any(isinstance(f, _RoutineRQ) for f in rq_worker.filters):
        rq_worker.addFilter(_RoutineRQ())


class _PoolLostConnection(logging.Filter):
    """When the database goes away, SQLAlchemy's pool cannot roll back or close a connection it is
    dropping and logs ERROR with a traceback; it then drops the connection and the next use opens a
    new one (pre-ping). The role's own "waiting for the database" line tells the outage, so this
    becomes one WARNING line naming the error. A handler filter: the pool logs under per-class names
    (sqlalchemy.pool.impl.QueuePool), and a logger's filters do not see its children's records."""

    DROPPING = ("Exception during reset or similar", "Exception closing connection %r",
                "Exception terminating connection %r")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("sqlalchemy.pool") and record.msg in self.DROPPING and record.exc_info:
            error = record.exc_info[1]
            record.msg, record.args = ("a pooled database connection could not be reset or closed (%s: %s); "
                                       "it is dropped and the next use opens a new one",
                                       (type(error).__name__, error))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _RoutineRQ(logging.Filter):
    """RQ says at INFO each time a worker cleans its registries (every WORKER_MAINTENANCE_INTERVAL s,
    one line per queue) and each time it cannot reach Redis (the role's own "waiting for Redis" line
    says that once): routine, not news."""

    QUIET = ("Worker %s: cleaning registries for queue: %s", "Worker %s: cleaning group registries",
             "Worker %s: could not connect to Redis instance: %s retrying in %d seconds...")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.QUIET
    # Alembic announces its plugins and dialect on every schema check; our own lines say what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
