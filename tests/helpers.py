"""Small readers shared by the tests."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from openvle.db.engine import session_scope
from openvle.db.models import Task


def load_task(task_id: int) -> Task:
    with session_scope() as session:
        return session.execute(
            select(Task).where(Task.id == task_id).options(selectinload(Task.subtasks), selectinload(Task.logs))
        ).scalar_one()


def task_status(task_id: int) -> str:
    with session_scope() as session:
        return session.execute(select(Task.status).where(Task.id == task_id)).scalar_one()


def settled(task_id: int) -> Task | None:
    task = load_task(task_id)
    return task if task.status in ("success", "error", "cancelled") else None


def retry_now(task_id: int, attempt: int, timeout: float = 60) -> float:
    """Control time instead of waiting for it: once `attempt` of the Task failed and RQ scheduled
    the retry, make that wait lapse now. Returns how many seconds after the failure RQ had planned
    the retry, so a test still checks the queue's interval. On a busy machine the wait may have
    lapsed by itself before this looked (the next attempt already there): then it returns how long
    after the failure that attempt started."""
    import time

    from rq.registry import ScheduledJobRegistry

    from openvle.connections import get_redis

    with session_scope() as session:
        task = session.get(Task, task_id)
        job_id, queue = task.rq_job_id, task.queue
    redis = get_redis()
    registry = ScheduledJobRegistry(queue, connection=redis)

    def failed_and_scheduled():
        attempts = load_task(task_id).subtasks
        if len(attempts) > attempt and attempts[attempt - 1].status == "error":  # retried already
            return None, attempts[attempt - 1].finished_at, attempts[attempt].started_at
        failed = len(attempts) == attempt and attempts[-1].status == "error"
        due = redis.zscore(registry.key, job_id) if failed else None
        return (due, attempts[-1].finished_at, None) if due is not None else None

    from conftest import WAIT_SCALE

    timeout *= WAIT_SCALE
    deadline = time.monotonic() + timeout
    while (found := failed_and_scheduled()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"attempt {attempt} of task {task_id} was not scheduled for a retry in {timeout}s")
        time.sleep(0.1)
    due, failed_at, retried_at = found
    if retried_at is not None:
        return (retried_at - failed_at).total_seconds()
    redis.zadd(registry.key, {job_id: time.time()}, xx=True)  # due now: the scheduler enqueues it next
    return due - failed_at.replace(tzinfo=dt.UTC).timestamp()


def account(username: str, role: str = "student", password: str | None = None) -> tuple[int, str]:
    """A user with an API token: (user id, token). Passwords cost an argon2 hash: only when asked."""
    from openvle.accounts.tokens import create_token
    from openvle.accounts.users import create_user

    user_id = create_user(username, f"{username}@uni.example", role, password=password)
    return user_id, create_token(user_id, "tests")[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_client():
    """The API in this process, with an admin's token (as a script would call it)."""
    from fastapi.testclient import TestClient

    from openvle.backend.app import create_app

    _, token = account("ops", "admin")
    client = TestClient(create_app())
    client.headers.update(bearer(token))
    return client


def sandbox_env(sims: dict) -> dict[str, str]:
    """The settings that point the system at simulators started in the test process
    (keys pve, guac, moodle, mail), as `make dev` points it at the sandbox."""
    pve, guac, moodle, mail = sims["pve"], sims["guac"], sims["moodle"], sims["mail"]
    return {
        "PVE_HOST": "127.0.0.1", "PVE_PORT": str(pve.port), "PVE_USER": pve.user, "PVE_TOKEN_NAME": pve.token_name,
        "PVE_TOKEN_VALUE": pve.token_value, "PVE_VERIFY_SSL": pve.ca_path, "PVE_POLL_INTERVAL": "1",
        "PVE_CLONE_CONCURRENCY": "4",
        "GUACAMOLE_URL": guac.url, "GUACAMOLE_USER": "guacadmin", "GUACAMOLE_PASSWORD": "guac-pass-1",
        "MOODLE_URL": moodle.url, "MOODLE_TOKEN": "moodle-token-1", "MOODLE_CATEGORY_ID": "2",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.smtp_port), "MAIL_FROM": "OpenVLE <lab@openvle.test>",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A redis-server of the test's own (append-only file on, as compose runs it) on a free port, to
    stop, kill and start again: the machine's Redis is never touched. Starts at once."""

    def __init__(self, directory: Path, appendfsync: str = "everysec"):
        self.dir, self.port, self.appendfsync, self.proc = directory, free_port(), appendfsync, None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        from conftest import wait_for

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, 20, "our redis-server")

    def _answers(self) -> bool:
        from redis import Redis

        try:
            return Redis.from_url(self.url).ping()
        except Exception:
            return False

    def kill(self) -> None:
        """As a crashed container: whatever the append-only file has, it keeps."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def started_proxmox(**options):
    """A Proxmox simulator of the test module's own, on a free port (a fixture's generator body)."""
    import uuid

    from sandbox.proxmox import ProxmoxSimulator

    sim = ProxmoxSimulator(host="127.0.0.1", port=0, user="openvle@pve", token_name="tests",
                           token_value=str(uuid.uuid4()), auth_fail_delay=0, **options)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def fresh_cluster(sim, settings_env, durations: dict[str, float], **env: str):
    """The simulator's seeded cluster anew, and the PVE_* settings pointing at it (this process and
    the workers it starts); `env` adds settings. Returns the simulator, its settings in `.env`."""
    from sandbox.runner import seed_proxmox

    sim.state.reset()
    seed_proxmox(sim.state)
    sim.state.configure(durations=durations, storage_concurrency=4, lock_wait=0.5)
    sim.env = {"PVE_HOST": "127.0.0.1", "PVE_PORT": str(sim.port), "PVE_USER": sim.user,
               "PVE_TOKEN_NAME": sim.token_name, "PVE_TOKEN_VALUE": sim.token_value, "PVE_VERIFY_SSL": sim.ca_path,
               "PVE_POLL_INTERVAL": "1", **env}
    settings_env(**sim.env)
    return sim


def new_template(vmid: int = 9000, mode: str = "linked", node: str = "pve1") -> int:
    """A template row (2 GiB of memory) for the simulator's template `vmid`; returns its id."""
    from openvle.db.models import Template

    with session_scope() as session:
        row = Template(name=f"t-{vmid}-{mode}", pve_vmid=vmid, node=node, clone_mode=mode, maxmem=2 * 1024**3)
        session.add(row)
        session.flush()
        return row.id
