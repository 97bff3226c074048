"""Credentials at rest: participants' Guacamole passwords only encrypted (SECRET_KEY, Fernet with key
rotation), never in a stored email body; a dump of the database reveals none of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import String, Text, create_engine, inspect, select, text

from conftest import MARIADB_ADMIN_URL, ROOT, TEST_SECRET_KEY, WAIT_SCALE, _reachable, wait_for
from openvle import credentials, guacamole_passwords
from openvle.db.engine import get_engine, session_scope
from openvle.db.models import Email, User
from openvle.db.schema import alembic_config
from openvle.settings import Settings
from test_events import lab, make_event, settled_event, sims, start_workers  # noqa: F401 (fixtures)

KEY_A = "key-a-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEY_B = "key-b-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def settings_with(**values) -> Settings:
    base = {"DATABASE_URL": "mysql+pymysql://u:p@db.example/openvle", "SECRET_KEY": None, "SECRET_KEY_PREVIOUS": None}
    return Settings(**{**base, **values})


# --- the key --------------------------------------------------------------------------------------------


def test_a_value_encrypted_under_one_key_opens_after_rotation_and_not_without_the_old_key():
    old = settings_with(SECRET_KEY=KEY_A)
    sealed = credentials.encrypt("hunter2-guac", old)
    assert "hunter2" not in sealed and credentials.decrypt(sealed, old) == "hunter2-guac"

    rotating = settings_with(SECRET_KEY=KEY_B, SECRET_KEY_PREVIOUS=f"{KEY_A}, ")
    assert credentials.decrypt(sealed, rotating) == "hunter2-guac"  # the old key still reads
    resealed = credentials.reencrypt(sealed, rotating)
    new_only = settings_with(SECRET_KEY=KEY_B)
    assert credentials.decrypt(resealed, new_only) == "hunter2-guac"
    with pytest.raises(credentials.CannotDecrypt, match="SECRET_KEY_PREVIOUS"):
        credentials.decrypt(sealed, new_only)  # not rotated, old key gone: a clear error, no traceback


@pytest.mark.parametrize("value, problem", [(None, "SECRET_KEY is not set"), ("short-key", "SECRET_KEY is too weak"),
                                            ("a" * 40, "SECRET_KEY is too weak")])
def test_a_missing_or_weak_key_is_one_line_naming_it_and_how_to_make_one(value, problem):
    with pytest.raises(credentials.SecretKeyError) as caught:
        credentials.keys(settings_with(SECRET_KEY=value))
    message = str(caught.value)
    assert message.startswith(problem) and "secrets.token_urlsafe(32)" in message
    with pytest.raises(credentials.SecretKeyError, match="SECRET_KEY_PREVIOUS is too weak"):
        credentials.keys(settings_with(SECRET_KEY=KEY_A, SECRET_KEY_PREVIOUS="old"))


def test_the_embedded_setup_makes_its_key_once_beside_the_sqlite_file(tmp_path):
    embedded = settings_with(DATABASE_URL=f"sqlite:///{tmp_path / 'openvle.sqlite3'}")
    sealed = credentials.encrypt("dev-pass", embedded)
    key_file = tmp_path / "openvle.sqlite3.secret-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert credentials.decrypt(sealed, embedded) == "dev-pass"  # the next process reads the same file
    assert credentials.keys(embedded) == [key_file.read_text().strip()]


@pytest.mark.parametrize("role", ["backend", "worker"])
def test_a_role_refuses_to_start_without_secret_key_in_production(role):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "SERVICE_"))}
    env.update(DATABASE_URL="mysql+pymysql://openvle:pw@127.0.0.1:1/openvle", REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run([sys.executable, "-m", "openvle", "run", role], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60 * WAIT_SCALE)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("openvle: SECRET_KEY is not set")
    assert "secrets.token_urlsafe(32)" in result.stderr and "Traceback" not in result.stderr


# --- stored passwords --------------------------------------------------------------------------------


def test_secrets_rotate_re_encrypts_every_stored_password(clean, settings_env):
    settings_env(SECRET_KEY=KEY_A)
    with session_scope() as session:
        users = [User(username=f"u{i}", email=f"u{i}@example.org", first_name="U", last_name=str(i)) for i in range(3)]
        session.add_all(users)
        session.flush()
        ids = [u.id for u in users]
    passwords = [guacamole_passwords.ensure(user_id) for user_id in ids]
    assert guacamole_passwords.ensure(ids[0]) == passwords[0]  # made once

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    rotate = subprocess.run([sys.executable, "-m", "openvle", "secrets", "rotate"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60 * WAIT_SCALE,
                            env={**env, "SECRET_KEY": KEY_B, "SECRET_KEY_PREVIOUS": KEY_A})
    assert rotate.returncode == 0, rotate.stderr
    assert rotate.stdout.startswith("3 stored credential(s) now encrypted under SECRET_KEY")

    settings_env(SECRET_KEY=KEY_B)  # the old key gone
    assert [guacamole_passwords.reveal(user_id) for user_id in ids] == passwords
    settings_env(SECRET_KEY=KEY_A)
    with pytest.raises(credentials.CannotDecrypt):
        guacamole_passwords.reveal(ids[0])
    again = subprocess.run([sys.executable, "-m", "openvle", "secrets", "rotate"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60 * WAIT_SCALE, env={**env, "SECRET_KEY": KEY_A})
    assert again.returncode == 2 and again.stderr.startswith("openvle: a stored credential cannot be decrypted")


def _migration_check(url: str) -> None:
    """A database at 0006 with plain passwords in users and in stored emails, upgraded to head."""
    from alembic import command

    engine = create_engine(url)
    try:
        config = alembic_config(url)
        command.upgrade(config, "0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, username, email, first_name, last_name, created_at, role, "
                              "active, guacamole_password) VALUES (1, 'ada', 'ada@example.org', 'Ada', 'L', "
                              "'2026-11-01 10:00:00', 'student', 1, 'Pl41n-Pass_word')"))
            conn.execute(text("INSERT INTO users (id, username, email, first_name, last_name, created_at, role, "
                              "active) VALUES (2, 'bob', 'bob@example.org', 'Bob', 'B', '2026-11-01 10:00:00', "
                              "'student', 1)"))
            for status in ("sent", "failed"):
                conn.execute(text(
                    "INSERT INTO emails (kind, recipient, subject, body_text, body_html, status, attempts, user_id, "
                    "created_at) VALUES ('event_deployed', 'ada@example.org', 'Your lab', "
                    "'user name: ada\n  password:  Pl41n-Pass_word\n', "
                    "'<p>password: <code>Pl41n-Pass_word</code></p>', :status, 1, 1, '2026-11-01 10:00:00')"),
                    {"status": status})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            dump = _dump(conn)
            sealed = conn.execute(text("SELECT guacamole_password_encrypted FROM users WHERE id = 1")).scalar()
            bob = conn.execute(text("SELECT guacamole_password_encrypted FROM users WHERE id = 2")).scalar()
            bodies = conn.execute(text("SELECT body_text, body_html FROM emails")).all()
        assert "Pl41n-Pass_word" not in dump
        assert credentials.decrypt(sealed) == "Pl41n-Pass_word" and bob is None
        for body_text, body_html in bodies:
            assert guacamole_passwords.PLACEHOLDER in body_text and guacamole_passwords.PLACEHOLDER in body_html
        fill = guacamole_passwords.filler(1)
        with _engine_at(url):
            assert "password:  Pl41n-Pass_word" in fill(bodies[0][0])  # what the participant gets when it is sent
    finally:
        engine.dispose()


class _engine_at:
    """Point this process's session_scope at another database for a moment."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        from openvle.db import engine

        engine.configure(self.url)

    def __exit__(self, *exc):
        from openvle.db import engine
        from openvle.settings import get_settings

        engine.get_engine().dispose()
        engine.configure(get_settings().DATABASE_URL)


def test_the_migration_encrypts_stored_passwords_on_sqlite(tmp_path, clean):
    _migration_check(f"sqlite:///{tmp_path / 'old.sqlite3'}")


@pytest.mark.skipif(
    os.environ.get("OPENVLE_TEST_STORES") == "embedded" or not _reachable("127.0.0.1", 3306),
    reason="MariaDB is not running here (the embedded pass checks SQLite)",
)
def test_the_migration_encrypts_stored_passwords_on_mariadb(clean):
    name = f"openvle_creds_{os.getpid()}"
    admin = create_engine(MARIADB_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    try:
        _migration_check(f"{MARIADB_ADMIN_URL}{name}")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


# --- end to end: what a dump of the database shows -----------------------------------------------------


def _dump(conn) -> str:
    """Every text column of every table, as `SELECT col FROM table` would give it to whoever has a dump."""
    inspector = inspect(conn)
    values: list[str] = []
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], String | Text):
                name = conn.dialect.identifier_preparer.quote(column["name"])
                values += [str(v) for v in conn.execute(text(f"SELECT {name} FROM {table}")).scalars() if v]
    return "\n".join(values)


PASSWORD_LINE = re.compile(r"password:\s+(\S+)")


def test_a_database_dump_reveals_no_guacamole_password(lab, start_role):  # noqa: F811 (the fixture)
    mail, guac = lab["mail"], lab["guac"]
    mail.state.reject(["student02@uni.example"])  # a failed email is kept for good
    workers = start_workers(start_role, lab)
    event_id = make_event(3, name="Dump Lab")
    from openvle.lab_events import request_deploy

    request_deploy(event_id, requested_by="tests")
    wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the deploy", workers[0],
             interval=1)

    received = {m["rcpt_tos"][0]: PASSWORD_LINE.search(m["text"]) for m in mail.state.messages()
                if "password:" in (m["text"] or "")}
    # the teacher's email gives their Guacamole login too (they watch every VM read-only)
    assert set(received) == {"student01@uni.example", "student03@uni.example", "teacher01@uni.example"}
    passwords = {address: match[1] for address, match in received.items()}
    with session_scope() as session:
        failed = session.execute(select(Email).where(Email.recipient == "student02@uni.example",
                                                     Email.kind == "event_deployed")).scalar_one()
        assert failed.status == "failed"
        ids = dict(session.execute(select(User.username, User.id)).all())
    passwords["student02@uni.example"] = guacamole_passwords.reveal(ids["student02"])
    for address, password in passwords.items():
        assert password and len(password) >= 16
        # the emailed password is the one Guacamole knows: the participant can log in with it
        login = httpx.post(f"{guac.url}/api/tokens", data={"username": address.split("@")[0], "password": password})
        assert login.status_code == 200, login.text

    with get_engine().connect() as conn:
        dump = _dump(conn)
    assert guacamole_passwords.PLACEHOLDER in dump  # the stored emails say where the password went
    leaked = [address for address, password in passwords.items() if password in dump]
    assert leaked == [], f"passwords of {leaked} readable in a database dump"
    assert TEST_SECRET_KEY not in dump
    for worker in workers:
        assert not any(password in worker.output for password in passwords.values())
