"""The scheduler role: periodic Tasks on time, in UTC, once per slot even with two schedulers."""

from __future__ import annotations

import time

from rq.cron import CronScheduler, get_cron_job_ids
from rq.job import Job
from sqlalchemy import select

from conftest import wait_for
from openvle.db.engine import session_scope
from openvle.db.models import Task
from openvle.periodic import BY_NAME, slot_of
from openvle.settings import get_settings


def tasks_of(operation: str) -> list[Task]:
    with session_scope() as session:
        return list(session.execute(select(Task).where(Task.operation == operation)).scalars())


def test_two_schedulers_never_enqueue_a_periodic_job_twice(start_role, settings_env):
    env = {"SCHEDULER_HEARTBEAT_INTERVAL": "2", "RECONCILE_INTERVAL": "3600"}
    settings_env(**env)
    worker = start_role("worker", **env)
    first = start_role("scheduler", **env)
    wait_for(lambda: len(CronScheduler.all(connection=_redis())) == 1, 60, "the first scheduler", first)
    time.sleep(0.9)  # out of phase with the first, as two containers would be
    second = start_role("scheduler", **env)
    wait_for(lambda: len(CronScheduler.all(connection=_redis())) == 2, 60, "the second scheduler", second)

    def ticks_and_slots():
        ticks = [Job.fetch(i, connection=_redis()) for i in get_cron_job_ids("heartbeat", _redis())]
        return ticks, {slot_of(BY_NAME["heartbeat"], t.enqueued_at.timestamp(), get_settings()) for t in ticks}

    # Both fire in the same slots for a few cycles, however long the machine took to start them.
    wait_for(lambda: (lambda t, s: len(s) >= 4 and len(t) > len(s))(*ticks_and_slots()), 60,
             "both schedulers to fire for four slots", second)
    first.stop()
    second.stop()
    ticks, slots = ticks_and_slots()
    wait_for(lambda: all(t.get_status(refresh=True) == "finished" for t in ticks), 20, "every tick", worker)

    heartbeats = tasks_of("housekeeping.heartbeat")
    assert len(ticks) > len(slots), "both schedulers should have fired"
    assert len(heartbeats) == len(slots) >= 4
    assert all(t.status == "success" for t in heartbeats)
    # Interval jobs also fire at each scheduler start: still one reconcile.
    assert len(tasks_of("housekeeping.reconcile")) == 1
    assert _redis().get("openvle:scheduler:heartbeat") is not None


def test_schedules_are_utc_whatever_the_host_timezone(start_role, clean):
    scheduler = start_role("scheduler", TZ="Asia/Tokyo")

    def registered():
        found = CronScheduler.all(connection=_redis())
        return found[0] if found and found[0].get_jobs() else None

    cron = wait_for(registered, 20, "the scheduler to register", scheduler)
    purge = next(j for j in cron.get_jobs() if j.name == "purge-tasks")
    assert purge.cron == "30 3 * * *"
    assert (purge.next_enqueue_time.hour, purge.next_enqueue_time.minute) == (3, 30)
    assert purge.next_enqueue_time.utcoffset().total_seconds() == 0


def _redis():
    from openvle.connections import get_redis

    return get_redis()
