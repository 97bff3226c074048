"""Periodic registrations for `rq cron`, made safe against duplicates, failures and backlogs.

RQ's cron has no job id, retry or duplicate protection: two scheduler processes enqueue every run
twice. So cron enqueues a small `tick(name)`; the tick claims the run's time slot in Redis
(SET NX, keyed by name and slot derived from when cron enqueued it) and only the first claimant
creates the real Task, which then has its queue's retries like any other operation. (A slot
claim is not the "one active Task" of enqueue.one_active: see `_run_once`.)

- A tick that cannot create its Task because the database is away gives its slot back and says so
  in one line (an outage is not a failure with a traceback); another failure fails the tick.
- A daily run nobody made at its time (that failure, no scheduler, no worker) is made by the next
  heartbeat tick: the Tasks table says whether a run since the last due time exists.
- Ticks expire in their queue after one interval, and a periodic Task still waiting is not queued
  again: a stopped worker leaves one node sync behind, not a backlog.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from croniter import croniter
from rq import get_current_job
from rq.cron import CronScheduler
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from openvle import stores, targets
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskStatus
from openvle.enqueue import enqueue_once
from openvle.errors import QueueUnavailable
from openvle.operations import get_operation
from openvle.settings import Settings, get_settings

log = logging.getLogger("openvle.periodic")

BATCH_TICK = 60  # seconds between looks for due spread deploy batches (spread.py)
DAILY_TICK_TTL = 3600  # a daily tick waiting longer is dropped: the next heartbeat tick catches up


@dataclass(frozen=True)
class Periodic:
    name: str
    operation: str
    every: Callable[[Settings], int] | None = None  # seconds
    cron: str | None = None  # UTC


PERIODIC: tuple[Periodic, ...] = (
    Periodic("heartbeat", "housekeeping.heartbeat", every=lambda s: s.SCHEDULER_HEARTBEAT_INTERVAL),
    Periodic("node-sync", "nodes.sync", every=lambda s: s.WORKER_PVE_PERIODIC_INTERVAL),
    Periodic("reconcile", "housekeeping.reconcile", every=lambda s: s.RECONCILE_INTERVAL),
    Periodic("purge-tasks", "housekeeping.purge_tasks", cron="30 3 * * *"),
    Periodic("purge-audit", "housekeeping.purge_audit", cron="45 3 * * *"),
    Periodic("email-cleanup", "mail.cleanup", cron="0 2 * * *"),
    Periodic("event-lifecycle", "events.lifecycle", cron="0 1 * * *"),
    Periodic("deploy-batches", "events.deploy_batches", every=lambda s: BATCH_TICK),
)
BY_NAME = {p.name: p for p in PERIODIC}


def slot_of(periodic: Periodic, enqueued_ts: float, settings: Settings) -> int:
    """The run this tick belongs to: interval number, or the minute for cron schedules."""
    length = periodic.every(settings) if periodic.every else 60
    return math.floor(enqueued_ts / length)


def last_due(periodic: Periodic, now: dt.datetime) -> dt.datetime:
    """When a cron periodic was last due, at or before `now` (naive UTC)."""
    return croniter(periodic.cron, now + dt.timedelta(seconds=1)).get_prev(dt.datetime)


def tick(name: str) -> str:
    """Run by a worker when cron fires: create the periodic Task once per slot."""
    settings = get_settings()
    periodic = BY_NAME[name]
    job = get_current_job()
    enqueued = job.enqueued_at or job.created_at
    slot = slot_of(periodic, enqueued.timestamp(), settings)
    ttl = max(2 * (periodic.every(settings) if periodic.every else 60), 120)
    try:
        outcome = _run_once(periodic, slot, ttl, job.id)
    except DBAPIError as exc:
        return _away(exc, f"periodic {name} not made")
    if name == "heartbeat":
        try:
            catch_up(dt.datetime.now(dt.UTC).replace(tzinfo=None), job.id)
        except DBAPIError as exc:
            _away(exc, "missed daily runs not looked for")
    return outcome


def _away(exc: DBAPIError, what: str) -> str:
    """A tick meeting a database outage: one line, no traceback (the slot was given back). The next
    tick of an interval makes its run; a daily run is made by a later heartbeat's catch-up."""
    if not stores.database_down(exc):
        raise exc
    log.warning("%s: the database is away (%s); a later tick makes it", what, type(exc.orig).__name__)
    return "database away"


def _run_once(periodic: Periodic, slot: int, ttl: int, claimant: str) -> str:
    """Make the run of one time slot: the first tick to claim the slot (SET NX) makes its Task,
    every other tick of that slot does nothing.

    This is a claim on a time slot, not the "one active Task" of enqueue.one_active, and stays its
    own thing: a second scheduler's tick of the same slot may come after the slot's Task finished,
    when no Task is active any more, and must still not make a second run; an active-Task look
    cannot tell that (the Task row does not say which slot it ran for). Inside the claim the Task
    is made by enqueue_once, which is one_active: a run of an earlier slot still waiting is not
    queued again."""
    redis = get_redis()
    key = f"openvle:periodic:{periodic.name}:{slot}"
    if not redis.set(key, claimant, nx=True, ex=ttl):
        log.info("periodic %s slot %s already taken; skipped", periodic.name, slot)
        return "duplicate"
    try:
        task = enqueue_once(periodic.operation, target=targets.periodic(periodic.name), requested_by="scheduler")
    except QueueUnavailable as exc:  # the Task is saved: the reconciler queues it
        return f"task {exc.task_id}"
    except Exception:
        if redis.get(key) == claimant.encode():  # give the slot back: another tick may make the run
            redis.delete(key)
        raise
    return f"task {task.id}"


def catch_up(now: dt.datetime, claimant: str) -> list[str]:
    """Make each daily run that was due since the system last ran but never made (the database was
    away at its time, no scheduler or worker ran): once, guarded by the slot of its due time.
    A system that had no Task before the due time (just installed) missed nothing."""
    made = []
    for periodic in PERIODIC:
        if periodic.cron is None:
            continue
        due = last_due(periodic, now)
        with session_scope() as session:
            # A run that failed for good (its retries spent while the database was away) is no run.
            ran = session.execute(select(Task.id).where(
                Task.operation == periodic.operation, Task.target == targets.periodic(periodic.name),
                Task.created_at >= due, Task.status.in_((*TaskStatus.ACTIVE, TaskStatus.SUCCESS))).limit(1)).first()
            existed = session.execute(select(Task.id).where(Task.created_at < due).limit(1)).first()
        if ran is None and existed is not None:
            slot = math.floor(due.replace(tzinfo=dt.UTC).timestamp() / 60)
            if _run_once(periodic, slot, 2 * 86400, claimant) != "duplicate":
                log.warning("periodic %s due at %s was missed; made now", periodic.name, f"{due:%Y-%m-%d %H:%M}")
                made.append(periodic.name)
    return made


def register_all(cron: CronScheduler, settings: Settings) -> None:
    for periodic in PERIODIC:
        if periodic.operation == "nodes.sync" and not settings.PVE_HOST:
            log.warning("node sync is off: PVE_HOST is not set")
            continue
        queue = get_operation(periodic.operation).queue
        schedule = {"interval": periodic.every(settings)} if periodic.every else {"cron": periodic.cron}
        cron.register(tick, queue_name=queue, args=(periodic.name,), name=periodic.name, job_timeout=60,
                      ttl=periodic.every(settings) if periodic.every else DAILY_TICK_TTL,
                      result_ttl=600, failure_ttl=86400, **schedule)
