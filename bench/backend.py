"""What the HTTP benchmarks share: a MariaDB database of their own, migrated, dropped after, and the
backend role started on it as its own process (as compose runs it)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
SECRET_KEY = secrets.token_urlsafe(32)
ADMIN_URL = os.environ.get("OPENVLE_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_env(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICE_", "QUEUE_", "WORKER_"))}
    # a throwaway key (roles on MariaDB need one): the database is dropped after the run
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, PYTHONUNBUFFERED="1", SECRET_KEY=SECRET_KEY)
    return env


@contextmanager
def bench_database(name: str, redis_url: str) -> Iterator[str]:
    """A fresh database at the schema's head (its URL); dropped after, whatever happened."""
    admin = create_engine(ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    url = f"{ADMIN_URL}{name}"
    try:
        subprocess.run([sys.executable, "-m", "openvle", "migrate"], env=role_env(url, redis_url), cwd=ROOT,
                       check=True, capture_output=True)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@contextmanager
def running_backend(database_url: str, redis_url: str, log_name: str) -> Iterator[str]:
    """The backend role on a free port until /healthz answers (its base URL); stopped after."""
    port = free_port()
    log = open(ROOT / "var" / log_name, "w") if (ROOT / "var").is_dir() else subprocess.DEVNULL
    backend = subprocess.Popen([sys.executable, "-m", "openvle", "run", "backend"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT,
                               env={**role_env(database_url, redis_url), "BACKEND_PORT": str(port),
                                    "BACKEND_MIGRATE_ON_START": "false", "LOG_LEVEL": "WARNING"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or backend.poll() is not None:
                raise RuntimeError(f"the backend did not start (see var/{log_name})")
            time.sleep(0.2)
        yield base
    finally:
        backend.terminate()
        backend.wait(timeout=30)
