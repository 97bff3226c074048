"""Stores away in the middle of the work: MariaDB unreachable (through the TCP fault proxy; the
machine's MariaDB never stops), Redis restarted (our own redis-server with its append-only file, as
compose runs it; the machine's Redis is never touched), and the daily lifecycle due meanwhile."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from proxy import FaultProxy
from scenario import (
    FAST_RECOVERY,
    Clock,
    Counts,
    RestartPolicy,
    count_archive,
    count_deploy,
    operation_done,
    report,
    sized,
    wait_settled,
)
from sqlalchemy import func, select, update

import test_events
from conftest import wait_for
from helpers import OwnRedis
from openvle.db.engine import session_scope
from openvle.db.models import Task, utcnow
from openvle.enqueue import enqueue_operation
from openvle.lab_events import request_archive, request_deploy
from test_events import make_event

sims, lab = test_events.sims, test_events.lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # whole deploys and archives, one worker each

OUTAGE = 30  # seconds MariaDB is unreachable


@pytest.fixture
def db_proxy(clean):
    proxy = FaultProxy.for_database(clean.database_url)
    yield proxy
    proxy.stop()


def _zeros(counts: Counts) -> tuple:
    return (counts.tasks_lost, counts.tasks_stuck, counts.failed_for_good, counts.vms_twice, counts.guacamole_twice,
            counts.moodle_users_twice, counts.emails_twice)


def test_mariadb_unreachable_for_30s_mid_deploy(lab, start_role, settings_env, db_proxy):
    if not db_proxy.url.startswith("mysql"):
        pytest.skip("needs MariaDB")
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    roles_env = {**env, "DATABASE_URL": db_proxy.url}
    worker = start_role("worker", **roles_env)
    roles = [worker, start_role("worker-vm-clone", **roles_env), start_role("scheduler", **roles_env)]
    n = sized(20, 10)
    event_id = make_event(n, name="Db Away")

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("vm.clone") >= 5, 300, "5 clones done", worker)
    db_proxy.cut()
    time.sleep(OUTAGE)  # the outage itself: what the scenario is about
    done_before = _steps_done(event_id)
    db_proxy.restore()
    back = Clock()
    wait_for(lambda: _steps_done(event_id) > done_before, 120, "a step of the deploy to settle after MariaDB is back",
             worker)
    resumed = back.seconds()
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, worker)
    counts = Counts(f"MariaDB unreachable {OUTAGE}s mid-deploy ({n})", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    counts.notes.append(f"{db_proxy.refused} connections refused during the outage; the next step settled "
                        f"{resumed:.1f}s and the whole deploy {back.seconds():.0f}s after MariaDB was back")
    request_archive(event_id)
    event = wait_settled(event_id, ("archived", "failed"), 600, worker)
    count_archive(counts, event_id, lab)
    report(counts)

    assert event.status == "archived", event.status_reason
    assert _zeros(counts) == (0,) * 7 and counts.left_after_archive == 0, counts.line()
    for role in roles:  # an outage is one "waiting" and one "back" line, never a traceback
        assert "Traceback" not in role.output, role.output[role.output.index("Traceback") - 2000:][:5000]


def test_the_daily_lifecycle_due_while_the_database_is_away_runs_when_it_is_back(lab, start_role, settings_env,
                                                                                  db_proxy):
    if not db_proxy.url.startswith("mysql"):
        pytest.skip("needs MariaDB")
    env = {**lab["env"], **FAST_RECOVERY}
    settings_env(**env)
    # The system ran yesterday; today's 01:00 lifecycle finds the database away.
    old = enqueue_operation("demo.noop")
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == old.id).values(
            status="success", created_at=utcnow() - dt.timedelta(days=2)))
    event_id = make_event(3, name="Due While Away", start_in_days=2)
    db_proxy.cut()
    roles_env = {**env, "DATABASE_URL": db_proxy.url, "SCHEMA_WAIT_TIMEOUT": "600"}
    worker = start_role("worker", wait=False, **roles_env)
    start_role("worker-vm-clone", wait=False, **roles_env)
    start_role("scheduler", **roles_env)
    clock = Clock()
    time.sleep(OUTAGE)  # ticks fire and fail meanwhile
    with session_scope() as session:
        assert session.execute(select(Task.id).where(Task.operation == "events.lifecycle")).first() is None
    db_proxy.restore()

    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, worker)
    counts = Counts(f"daily lifecycle due while MariaDB away {OUTAGE}s", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    with session_scope() as session:
        runs = session.execute(select(Task.status).where(Task.operation == "events.lifecycle")).scalars().all()
    counts.notes.append(f"lifecycle runs: {len(runs)}")
    report(counts)

    assert runs == ["success"]
    assert event.status == "deployed", event.status_reason
    assert _zeros(counts) == (0,) * 7, counts.line()


@pytest.fixture
def own_redis(tmp_path, clean):
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def test_redis_killed_and_restarted_mid_deploy(lab, start_role, settings_env, own_redis):
    env = {**lab["env"], **FAST_RECOVERY, "REDIS_URL": own_redis.url}
    settings_env(**env)
    # Roles register in our Redis, not the test run's; a worker quits when Redis is gone, and
    # compose starts it again (restart: unless-stopped): so does this policy.
    compose = RestartPolicy(start_role, env, ["worker", "worker-vm-clone", "scheduler"])
    n = sized(20, 10)
    event_id = make_event(n, name="Redis Restart")

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("vm.clone") >= 5, 300, "5 clones done")
    own_redis.kill()
    time.sleep(10)  # away for a while
    own_redis.start()
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600)
    counts = Counts(f"Redis killed mid-deploy, back after 10s (append-only file) ({n})", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    request_archive(event_id)
    event = wait_settled(event_id, ("archived", "failed"), 600)
    count_archive(counts, event_id, lab)
    compose.stop()
    counts.notes.append(f"{compose.restarts} role restarts (compose's restart policy)")
    report(counts)

    assert event.status == "archived", event.status_reason
    assert _zeros(counts) == (0,) * 7 and counts.left_after_archive == 0, counts.line()


def _steps_done(event_id: int) -> int:
    """The event's steps that settled successfully so far (how soon work goes on after an outage)."""
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Task).where(
            Task.event_id == event_id, Task.status == "success")).scalar()


def test_redis_away_60s_mid_deploy_and_nothing_restarts_the_roles(own_redis, lab, start_role, settings_env):
    """As `make dev` runs: no restart policy. Every role waits for Redis, says so once and once that it
    is back, and the deploy goes on (issue 17: before, busy workers and the scheduler exited and the
    deploy never settled)."""
    env = {**lab["env"], **FAST_RECOVERY, "REDIS_URL": own_redis.url}
    settings_env(**env)
    roles = {role: start_role(role, wait=False, **env) for role in ("worker", "worker-vm-clone", "scheduler")}
    n = sized(20, 10)
    event_id = make_event(n, name="Redis Away")

    clock = Clock()
    request_deploy(event_id)
    wait_for(lambda: operation_done("vm.clone") >= 5, 300, "5 clones done", roles["worker"])
    own_redis.kill()
    time.sleep(60)  # the outage itself: what the scenario is about
    done_before = _steps_done(event_id)
    own_redis.start()
    back = Clock()
    wait_for(lambda: _steps_done(event_id) > done_before, 120, "a step of the deploy to settle after Redis is back",
             roles["worker"])
    resumed = back.seconds()
    event = wait_settled(event_id, ("deployed", "deployed_with_failures"), 600, roles["worker"])
    counts = Counts(f"Redis away 60s mid-deploy ({n}), nothing restarts the roles", settle_seconds=clock.seconds())
    count_deploy(counts, event_id, lab)
    counts.notes.append(f"the next step settled {resumed:.1f}s and the whole deploy {back.seconds():.0f}s after "
                        "Redis was back")
    report(counts)

    assert event.status == "deployed", event.status_reason
    assert _zeros(counts) == (0,) * 7, counts.line()
    for role, proc in roles.items():
        assert proc.proc.poll() is None, f"{role} exited:\n{proc.output[-3000:]}"
        lines = proc.output.splitlines()
        assert sum("waiting for Redis (REDIS_URL)" in line for line in lines) == 1, (role, proc.output[-4000:])
        assert sum("Redis is back after" in line for line in lines) == 1, (role, proc.output[-4000:])
