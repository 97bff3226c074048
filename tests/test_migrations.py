"""Migrations upgrade empty MariaDB and SQLite databases to a schema identical to the models."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from conftest import MARIADB_ADMIN_URL, _reachable
from openvle.db.models import Base
from openvle.db.schema import current_revision, head_revision, upgrade


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
