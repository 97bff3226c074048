"""Migrations upgrade empty MariaDB and SQLite databases to a schema identical to the models, and on
MariaDB only ever under the migration lock."""

from __future__ import annotations

import os
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from conftest import MARIADB_ADMIN_URL, _reachable, wait_for
from openvle.db.models import Base
from openvle.db.schema import MigrationLockTimeout, current_revision, head_revision, lock_name, upgrade


def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        assert current_revision(engine) is None
        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        assert set(inspect(engine).get_table_names()) >= {"tasks", "subtasks", "task_logs", "task_dependencies"}
        # A second upgrade is a no-op, as when every backend replica migrates at start.
        assert upgrade(engine) == (head_revision(), head_revision())
    finally:
        engine.dispose()


def test_sqlite_from_empty(tmp_path):
    _check(f"sqlite:///{tmp_path / 'empty.sqlite3'}")


@pytest.mark.skipif(
    os.environ.get("OPENVLE_TEST_STORES") == "embedded" or not _reachable("127.0.0.1", 3306),
    reason="MariaDB is not running here (the embedded pass checks SQLite)",
)
def test_mariadb_from_empty():
    name = f"openvle_migrate_{os.getpid()}"
    admin = create_engine(MARIADB_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        _check(f"{MARIADB_ADMIN_URL}{name}")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture
def scratch_mariadb():
    if os.environ.get("OPENVLE_TEST_STORES") == "embedded" or not _reachable("127.0.0.1", 3306):
        pytest.skip("MariaDB is not running here (GET_LOCK is MariaDB's)")
    name = f"openvle_lock_{os.getpid()}"
    admin = create_engine(MARIADB_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine = create_engine(f"{MARIADB_ADMIN_URL}{name}")
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def _holding_the_lock(engine):
    """A second connection, as another backend replica mid-migration, holding the migration lock."""
    holder = engine.connect()
    assert holder.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": lock_name(engine)}).scalar() == 1
    return holder


def test_a_migration_never_runs_without_the_lock_it_stops_when_the_wait_is_over(scratch_mariadb):
    holder = _holding_the_lock(scratch_mariadb)
    try:
        with pytest.raises(MigrationLockTimeout) as stopped:
            upgrade(scratch_mariadb, lock_timeout=1)
        assert f"held the schema migration lock '{lock_name(scratch_mariadb)}'" in str(stopped.value)
        assert "SCHEMA_LOCK_TIMEOUT=1s: not migrating without it" in str(stopped.value)
        assert current_revision(scratch_mariadb) is None  # not one table made
        assert "tasks" not in inspect(scratch_mariadb).get_table_names()
    finally:
        holder.close()


def test_a_migration_waits_for_the_lock_and_runs_once_it_is_released(scratch_mariadb):
    holder = _holding_the_lock(scratch_mariadb)
    outcome: dict = {}
    waiting = threading.Thread(target=lambda: outcome.update(result=upgrade(scratch_mariadb, lock_timeout=600)))
    waiting.start()
    try:
        # the other process is blocked in GET_LOCK on our lock: waiting, not migrating
        wait_for(lambda: holder.execute(text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE :q AND ID != CONNECTION_ID()"),
            {"q": f"SELECT GET_LOCK('{lock_name(scratch_mariadb)}'%"}).scalar(), 30, "the wait for the lock")
        assert current_revision(scratch_mariadb) is None and "result" not in outcome
    finally:
        holder.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name(scratch_mariadb)})
        holder.close()
        waiting.join(timeout=120)
    assert outcome["result"] == (None, head_revision())
    assert current_revision(scratch_mariadb) == head_revision()
