"""The scheduler role: periodic Tasks on time, in UTC, once per slot even with two schedulers."""

from __future__ import annotations

import time
from collections import Counter

import pytest
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
        # A tick not started within its interval expires unstarted (its job's TTL, so a stopped worker
        # leaves no backlog): on a busy machine some are gone, and they did nothing.
        ids = get_cron_job_ids("heartbeat", _redis())
        ticks = [t for t in Job.fetch_many(ids, connection=_redis()) if t is not None]
        return ticks, {slot_of(BY_NAME["heartbeat"], t.enqueued_at.timestamp(), get_settings()) for t in ticks}

    # Both fire in the same slots for a few cycles, however long the machine took to start them.
    wait_for(lambda: (lambda t, s: len(s) >= 4 and len(t) > len(s))(*ticks_and_slots()), 60,
             "both schedulers to fire for four slots", second)
    first.stop()
    second.stop()

    def settled() -> bool:
        return all(t.get_status(refresh=False) == "finished" for t in ticks_and_slots()[0])

    wait_for(settled, 60, "every tick to run or expire", worker)
    ticks, slots = ticks_and_slots()

    heartbeats = tasks_of("housekeeping.heartbeat")
    assert slots, "the ticks that ran"
    # Each slot is claimed by exactly one of its ticks; the other says "duplicate".
    claims = Counter(slot_of(BY_NAME["heartbeat"], t.enqueued_at.timestamp(), get_settings()) for t in ticks
                     if t.return_value() != "duplicate")
    assert set(claims) == slots and set(claims.values()) == {1}, claims
    # A claim makes a Task, or finds the last one still queued on a busy machine (a backlog collapses
    # to one run): never two Tasks for one slot.
    made = {t.return_value() for t in ticks} - {"duplicate"}
    assert {f"task {h.id}" for h in heartbeats} == made and len(heartbeats) <= len(slots)
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


# --- issue 12 bug 8: missed, failed and piled-up ticks -----------------------------------------------


def _tick_at(name: str, when: float) -> Job:
    """A tick as cron enqueues it at `when` (a worker runs it)."""
    import datetime as dt

    from rq import Queue

    from openvle.operations import get_operation
    from openvle.periodic import tick

    job = Queue(get_operation(BY_NAME[name].operation).queue, connection=_redis()).enqueue(tick, name)
    job.enqueued_at = dt.datetime.fromtimestamp(when, dt.UTC)
    job.save()
    return job


def test_a_daily_run_missed_while_the_system_was_away_runs_at_the_next_tick(start_role, clean):
    import datetime as dt

    from sqlalchemy import update

    from openvle.enqueue import enqueue_operation

    # The system ran yesterday (a Task from then), but nothing ran at today's 01:00 (the database
    # was away, or no scheduler ran): the next tick, whatever it is, catches up once.
    old = enqueue_operation("demo.noop")
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == old.id).values(
            created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=2)))
    worker = start_role("worker")
    now = time.time()
    ticks = [_tick_at("heartbeat", now), _tick_at("heartbeat", now + 60)]
    wait_for(lambda: all(t.get_status(refresh=True) == "finished" for t in ticks), 30, "the ticks", worker)

    for operation in ("events.lifecycle", "mail.cleanup", "housekeeping.purge_tasks", "housekeeping.purge_audit"):
        assert len(tasks_of(operation)) == 1, operation
    # The second tick ran while the first one's heartbeat still waited behind it: no second one.
    assert len(tasks_of("housekeeping.heartbeat")) == 1


def test_a_backlog_of_node_sync_ticks_makes_one_sync(start_role, clean):
    interval = get_settings().WORKER_PVE_PERIODIC_INTERVAL
    now = time.time()
    ticks = [_tick_at("node-sync", now - k * interval) for k in range(5, 0, -1)]  # worker-periodic was stopped
    worker = start_role("worker-periodic")
    wait_for(lambda: all(t.get_status(refresh=True) == "finished" for t in ticks), 30, "the ticks", worker)

    assert len(tasks_of("nodes.sync")) == 1


def test_ticks_expire_in_their_queue(clean):
    from openvle.periodic import register_all

    cron = CronScheduler(connection=_redis(), name="test")
    register_all(cron, get_settings())
    jobs = {j.name: j for j in cron.get_jobs()}

    assert jobs["heartbeat"].job_options["ttl"] == get_settings().SCHEDULER_HEARTBEAT_INTERVAL
    assert jobs["reconcile"].job_options["ttl"] == get_settings().RECONCILE_INTERVAL
    assert jobs["event-lifecycle"].job_options["ttl"] is not None  # a late daily tick: the next tick catches up


def test_a_tick_while_the_database_is_away_gives_its_slot_back_in_one_line(settings_env, caplog):
    import logging
    import socket

    from rq import SimpleWorker
    from sqlalchemy.engine import make_url

    url = make_url(get_settings().DATABASE_URL)
    if not url.drivername.startswith("mysql"):
        pytest.skip("an unreachable server needs a networked database")
    with socket.socket() as probe:  # a port nothing listens on: "can't connect", as an outage looks
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    normal = get_settings().DATABASE_URL
    now = time.time()
    settings_env(DATABASE_URL=url.set(host="127.0.0.1", port=closed_port).render_as_string(hide_password=False))
    away = _tick_at("reconcile", now)
    worker = SimpleWorker([away.origin], connection=_redis())
    with caplog.at_level(logging.INFO):
        worker.work(burst=True)

    assert away.get_status(refresh=True) == "finished" and away.return_value() == "database away"
    lines = [r for r in caplog.records if r.name == "openvle.periodic"]
    assert [r.levelname for r in lines] == ["WARNING"], lines
    assert "reconcile not made: the database is away" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]

    # The slot was given back: once the database is back, a tick of the same slot makes the run.
    settings_env(DATABASE_URL=normal)
    again = _tick_at("reconcile", now)
    SimpleWorker([again.origin], connection=_redis()).work(burst=True)
    assert again.return_value() == f"task {tasks_of('housekeeping.reconcile')[0].id}"
