"""What every `openvle` command group shares: exit codes, one-line errors instead of tracebacks, the
stores (with `make dev`'s Redis found by itself), quiet logs, and the text formatting of tables and
times. The commands live in cli_lab_events.py (templates, events, VMs) and cli_accounts.py (users)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

    from openvle.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DEV_REDIS_SOCKET = Path("var") / "redis" / "redis.sock"


class CliError(Exception):
    """Bad input: one line on stderr, exit 2."""

    code = EXIT_USAGE


class StoreError(CliError):
    """Redis or the database does not answer (or the schema is behind): one line, exit 1."""

    code = EXIT_FAILED


# --- the stores ----------------------------------------------------------------------------------


def use_dev_redis() -> str | None:
    """REDIS_URL unset and a live `make dev` Redis in ./var/redis: use that one (and say so)."""
    if os.environ.get("REDIS_URL"):
        return None
    socket = DEV_REDIS_SOCKET.resolve()
    if not socket.exists():
        return None
    from redis import Redis

    url = f"unix://{socket}"
    try:
        Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping()
    except Exception:  # a socket file left by a dev run that was killed
        return None
    os.environ["REDIS_URL"] = url
    from openvle.settings import get_settings

    get_settings.cache_clear()
    return url


def check_database() -> None:
    """The schema must be at head before the CLI reads or writes anything."""
    from sqlalchemy.exc import SQLAlchemyError

    from openvle.db.engine import get_engine
    from openvle.db.schema import current_revision, head_revision
    from openvle.settings import get_settings
    from openvle.settings_help import mask_url

    url = mask_url(get_settings().DATABASE_URL)
    try:
        current = current_revision(get_engine())
    except SQLAlchemyError as exc:
        raise StoreError(f"the database at {url} is not reachable ({first_line(getattr(exc, 'orig', exc))}): "
                         "check DATABASE_URL") from None
    head = head_revision()
    if current != head:
        raise StoreError(f"the database at {url} has schema {current or 'none'}, this version needs {head}: "
                         "run `openvle migrate` (or `make dev`, which migrates)")


def first_line(value: object) -> str:
    return (str(value).strip().splitlines() or [type(value).__name__])[0]


# --- errors and messages -------------------------------------------------------------------------


def guarded(body) -> int:
    """Run `body`; the problems people can fix are one line on stderr and an exit code."""
    try:
        return body()
    except CliError as exc:
        fail(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # classified here, so bad input never pays for importing the stores' libraries
        code = _explain(exc)
        if code is None:
            raise
        return code


def _explain(exc: Exception) -> int | None:
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from openvle.errors import QueueUnavailable
    from openvle.lab_events import EventError
    from openvle.settings import get_settings
    from openvle.settings_help import mask_url

    if isinstance(exc, EventError):
        fail(f"{exc} (see `openvle event list` and `openvle event show ID`)")
        return EXIT_USAGE
    from openvle.errors import RequestError

    if isinstance(exc, RequestError):
        fail(str(exc))
        return EXIT_USAGE
    if isinstance(exc, QueueUnavailable):
        fail(str(exc))
        return EXIT_FAILED
    if isinstance(exc, RedisError):
        fail(f"Redis at {mask_url(get_settings().REDIS_URL)} is not reachable ({first_line(exc)}): "
             "start `make dev` in this directory (its Redis is found by itself) or set REDIS_URL")
        return EXIT_FAILED
    if isinstance(exc, SQLAlchemyError):
        fail(f"the database at {mask_url(get_settings().DATABASE_URL)} failed: "
             f"{first_line(getattr(exc, 'orig', None) or exc)}")
        return EXIT_FAILED
    return None


def fail(message: str) -> None:
    print(f"openvle: {' '.join(message.split())}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(f"openvle: {message}", file=sys.stderr, flush=True)


def quiet_logs(settings: Settings) -> None:
    """The CLI's own output is for people: log lines only from WARNING up, and on stderr."""
    import logging

    from openvle import logs

    logs.setup("cli", "WARNING" if settings.LOG_LEVEL in ("DEBUG", "INFO") else settings.LOG_LEVEL,
               settings.secrets())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


# --- formatting ----------------------------------------------------------------------------------


def render_table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers)] + [line(row) for row in rows]


def when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def status_text(status: str) -> str:
    return status.replace("_", " ")
