"""Schema upgrades with Alembic (migrations/ at the repository root) and the start-up check.

The backend upgrades at start (BACKEND_MIGRATE_ON_START); the other roles wait until the schema is
at head, so a worker never writes to tables an old schema lacks.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


class SchemaNotReady(Exception):
    pass


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class MigrationLockTimeout(SchemaNotReady):
    """Another process held the migration lock for longer than we may wait: we do not migrate."""


def lock_name(engine: Engine) -> str:
    """One MariaDB named lock per database (GET_LOCK names are server-wide; MariaDB allows 64 characters)."""
    return f"openvle_migrate_{engine.url.database}"[:64]


def upgrade(engine: Engine, lock_timeout: float | None = None) -> tuple[str | None, str]:
    """Upgrade to head; several processes starting at once serialise on a MariaDB named lock. Without
    the lock nothing is migrated: we wait up to `lock_timeout` s (SCHEMA_LOCK_TIMEOUT), then stop."""
    if lock_timeout is None:
        from openvle.settings import get_settings

        lock_timeout = get_settings().SCHEMA_LOCK_TIMEOUT
    url = engine.url.render_as_string(hide_password=False)
    before = current_revision(engine)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    with engine.connect() as conn:
        if mysql:
            _take_lock(conn, lock_name(engine), lock_timeout)
        try:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        finally:
            if mysql:
                conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(engine)})
    after = head_revision()
    if before != after:
        log.info("database schema upgraded from %s to %s", before or "empty", after)
    return before, after


def _take_lock(conn, name: str, timeout: float) -> None:
    """GET_LOCK answers 1 (ours), 0 (timed out: someone else migrates) or NULL (an error)."""
    deadline = time.monotonic() + timeout
    while True:
        wait = max(0, min(10, math.ceil(deadline - time.monotonic())))
        got = conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait}).scalar()
        if got == 1:
            return
        if got is None:
            raise SchemaNotReady(f"MariaDB could not give the schema migration lock {name!r} (GET_LOCK answered "
                                 "NULL): not migrating without it; start again")
        holder = conn.execute(text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(
                f"another process (MariaDB connection {holder}) held the schema migration lock {name!r} for more "
                f"than SCHEMA_LOCK_TIMEOUT={timeout:g}s: not migrating without it; let that migration finish "
                "(or stop it), then start again or run `openvle migrate`")
        log.warning("waiting for the schema migration lock %r, held by MariaDB connection %s", name, holder)


def wait_until_current(engine: Engine, timeout: float = 120.0) -> None:
    """Block until the schema is at head (another role migrates), or raise SchemaNotReady."""
    head = head_revision()
    deadline = time.monotonic() + timeout
    last_log = 0.0
    while True:
        try:
            current = current_revision(engine)
        except Exception as exc:  # the database may still be starting
            current, reason = None, f"database not reachable ({type(exc).__name__})"
        else:
            reason = f"schema is at {current or 'nothing'}, this version needs {head}"
        if current == head:
            return
        if time.monotonic() > deadline:
            raise SchemaNotReady(
                f"{reason}: run `openvle migrate` (the backend does it at start when "
                "BACKEND_MIGRATE_ON_START=true)"
            )
        if time.monotonic() - last_log > 10:
            log.warning("waiting for the database schema: %s", reason)
            last_log = time.monotonic()
        time.sleep(2)
