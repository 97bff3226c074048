"""No role exits because Redis or the database is away: each waits, says once that it waits and once
that it is back, and goes on. Redis is a redis-server of the test's own (the machine's is never
touched); the database is cut through the fault suite's TCP proxy (MariaDB itself never stops)."""

from __future__ import annotations

import httpx
import pytest

from conftest import wait_for
from faults.proxy import FaultProxy
from helpers import OwnRedis, account, bearer, free_port, load_task, settled
from openvle.enqueue import enqueue_operation

pytestmark = pytest.mark.slow  # roles as processes, a store away and back


@pytest.fixture
def own_redis(tmp_path, clean):
    server = OwnRedis(tmp_path, appendfsync="always")
    yield server
    server.kill()


def _lines(role, text: str) -> int:
    return sum(1 for line in role.output.splitlines() if text in line)


def _healthz(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code
    except httpx.TransportError:
        return None


def test_redis_away_no_role_exits_each_says_so_once_and_the_work_goes_on(own_redis, start_role, settings_env):
    settings_env(REDIS_URL=own_redis.url)  # (own_redis first: it stops after the roles)
    env = {"REDIS_URL": own_redis.url, "WORKER_MAINTENANCE_INTERVAL": "5", "SCHEDULER_HEARTBEAT_INTERVAL": "2",
           "RECONCILE_INTERVAL": "5", "RECONCILE_GRACE": "5"}
    worker = start_role("worker", wait=False, **env)
    scheduler = start_role("scheduler", wait=False, **env)
    port = free_port()
    backend = start_role("backend", BACKEND_PORT=str(port), DEV_MODE="true", **env)
    _, token = account("ops", "admin")
    api = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthz(api) == 200, 30, "the backend", backend)
    waiting = enqueue_operation("demo.moodle", {"wait_checks": 30})  # checks back through RQ's scheduler
    wait_for(lambda: load_task(waiting.id).progress > 0, 30, "a job checking back", worker)
    running = enqueue_operation("demo.mails", {"duration": 4})  # the worker is busy with it when Redis goes
    # Its own code runs (its first step reported), not only its attempt opened: the horse talks to
    # Redis before it calls the job, and would wait out the outage there instead.
    wait_for(lambda: load_task(running.id).progress > 0, 30, "a job running its code", worker)

    own_redis.kill()
    roles = (worker, scheduler)
    wait_for(lambda: all(_lines(r, "waiting for Redis (REDIS_URL)") for r in roles), 60,
             "each role to say it waits for Redis")
    # The running job does its work meanwhile (its progress is in the database): it ends with Redis away.
    wait_for(lambda: load_task(running.id).progress == 100, 30, "the running job to end its work", worker)
    assert _healthz(api) == 503  # the backend answers, naming what is away
    # Asked for meanwhile: 503 naming the Task, which is kept and queued once Redis is back.
    asked = httpx.post(f"{api}/api/tasks/demo", json={"queue": "mails"}, headers=bearer(token), timeout=30)
    assert asked.status_code == 503 and asked.json().get("task_id"), asked.text
    kept = asked.json()["task_id"]
    assert load_task(kept).status == "queued"
    own_redis.start()

    done = [wait_for(lambda t=t: settled(t.id), 90, "the work to go on", worker) for t in (running, waiting)]
    assert [t.status for t in done] == ["success", "success"], [(t.status, t.error) for t in done]
    assert [s.status for s in done[0].subtasks] == ["success"]  # it waited to say so: no attempt lost
    assert wait_for(lambda: settled(kept), 90, "the Task asked for while Redis was away", worker).status == "success"
    after = enqueue_operation("demo.mails", {})
    assert wait_for(lambda: settled(after.id), 30, "new work", worker).status == "success"
    wait_for(lambda: _healthz(api) == 200, 30, "the backend to answer 200 again", backend)
    for role in (worker, scheduler, backend):
        assert role.proc.poll() is None, f"{role.role} exited:\n{role.output[-3000:]}"
    for role in roles:
        assert _lines(role, "waiting for Redis (REDIS_URL)") == 1, role.output[-5000:]
        assert _lines(role, "Redis is back after") == 1, role.output[-5000:]
        assert "Traceback" not in role.output and "quitting" not in role.output, role.output[-5000:]


def test_the_database_away_the_worker_waits_says_so_once_and_goes_on(start_role, settings_env, clean):
    if not clean.database_url.startswith("mysql"):
        pytest.skip("cuts MariaDB through the fault proxy")
    proxy = FaultProxy.for_database(clean.database_url)
    try:
        worker = start_role("worker", DATABASE_URL=proxy.url)
        proxy.cut()
        task = enqueue_operation("demo.mails", {})  # the test's own connection is not cut
        wait_for(lambda: _lines(worker, "waiting for the database (DATABASE_URL)"), 60, "the worker to wait", worker)
        proxy.restore()

        done = wait_for(lambda: settled(task.id), 60, "the task", worker)
        assert done.status == "success" and [s.status for s in done.subtasks] == ["success"], done.error
        assert worker.proc.poll() is None
        assert _lines(worker, "waiting for the database (DATABASE_URL)") == 1, worker.output[-5000:]
        assert _lines(worker, "the database is back after") == 1, worker.output[-5000:]
        assert "Traceback" not in worker.output, worker.output[-5000:]
    finally:
        proxy.stop()


def test_a_role_waiting_for_redis_still_stops_on_sigterm(own_redis, start_role, settings_env):
    """compose stops (and recreates) roles while Redis may be away: a role that waits for Redis must
    still honour SIGTERM, or `docker compose stop` hangs until its kill timeout."""
    settings_env(REDIS_URL=own_redis.url)
    env = {"REDIS_URL": own_redis.url, "WORKER_MAINTENANCE_INTERVAL": "5", "SCHEDULER_HEARTBEAT_INTERVAL": "2"}
    roles = [start_role("worker", wait=False, **env), start_role("scheduler", wait=False, **env)]
    waiting = enqueue_operation("demo.moodle", {"wait_checks": 60})  # keeps the worker talking to Redis
    wait_for(lambda: load_task(waiting.id).progress > 0, 30, "a job checking back", roles[0])
    own_redis.kill()
    wait_for(lambda: all(_lines(r, "waiting for Redis (REDIS_URL)") for r in roles), 60,
             "each role to say it waits for Redis")
    for role in roles:
        code = role.stop(timeout=60)  # SIGTERM, then SIGKILL after 60 s
        assert code in (0, 1), f"{role.role} did not stop on SIGTERM (code {code}):\n{role.output[-3000:]}"
