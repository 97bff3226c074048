"""One SQLAlchemy engine per process, safe across RQ's fork.

RQ's fork worker runs every job in a child process: a pooled connection inherited from the parent
must never be used by the child, so the pool is forgotten (not closed) after each fork.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from openvle import name_lookup

_engine: Engine | None = None
_sessions: sessionmaker[Session] | None = None


def build_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # MariaDB closes idle connections after wait_timeout; pre-ping and recycle keep workers healthy.
    engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5)
    event.listen(engine, "do_connect", _look_up_again_for_now)
    return engine


def _look_up_again_for_now(dialect, _record, cargs, cparams):
    """Connect, looking the host name up again while it fails "for now" (see name_lookup)."""
    return name_lookup.retrying()(dialect.connect, *cargs, **cparams)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the backend read while a worker writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def configure(url: str) -> Engine:
    """Set the process-wide engine (called once at start, and by tests)."""
    global _engine, _sessions
    if _engine is not None:
        _engine.dispose()
    _engine = build_engine(url)
    _sessions = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def get_engine() -> Engine:
    if _engine is None:
        from openvle.settings import get_settings

        configure(get_settings().DATABASE_URL)
    assert _engine is not None
    return _engine


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    get_engine()
    assert _sessions is not None
    session = _sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _forget_pool_after_fork() -> None:
    if _engine is not None:
        _engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_pool_after_fork)
