"""Periodic registrations for `rq cron`, made safe against duplicates.

RQ's cron has no job id, retry or duplicate protection: two scheduler processes enqueue every run
twice. So cron enqueues a small `tick(name)`; the tick claims the run's time slot in Redis
(SET NX, keyed by name and slot derived from when cron enqueued it) and only the first claimant
creates the real Task, which then has its queue's retries like any other operation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from rq import get_current_job
from rq.cron import CronScheduler

from openvle.connections import get_redis
from openvle.enqueue import enqueue_operation
from openvle.operations import get_operation
from openvle.settings import _Settings, get_settings

log = logging.getLogger("openvle.periodic")


@dataclass(frozen=True)
class Periodic:
    name: str
    operation: str
    every: Callable[[_Settings], int] | None = None  # seconds
    cron: str | None = None  # UTC


PERIODIC: tuple[Periodic, ...] = (
    Periodic("heartbeat", "housekeeping.heartbeat", every=lambda s: s.SCHEDULER_HEARTBEAT_INTERVAL),
    Periodic("node-sync", "nodes.sync", every=lambda s: s.WORKER_PVE_PERIODIC_INTERVAL),
    Periodic("reconcile", "housekeeping.reconcile", every=lambda s: s.RECONCILE_INTERVAL),
    Periodic("purge-tasks", "housekeeping.purge_tasks", cron="30 3 * * *"),
    Periodic("purge-audit", "housekeeping.purge_audit", cron="45 3 * * *"),
    Periodic("email-cleanup", "mail.cleanup", cron="0 2 * * *"),
    Periodic("event-lifecycle", "events.lifecycle", cron="0 1 * * *"),
)
BY_NAME = {p.name: p for p in PERIODIC}


def slot_of(periodic: Periodic, enqueued_ts: float, settings: _Settings) -> int:
    """The run this tick belongs to: interval number, or the minute for cron schedules."""
    length = periodic.every(settings) if periodic.every else 60
    return math.floor(enqueued_ts / length)


def tick(name: str) -> str:
    """Run by a worker when cron fires: create the periodic Task once per slot."""
    settings = get_settings()
    periodic = BY_NAME[name]
    job = get_current_job()
    enqueued = job.enqueued_at or job.created_at
    slot = slot_of(periodic, enqueued.timestamp(), settings)
    ttl = max(2 * (periodic.every(settings) if periodic.every else 60), 120)
    if not get_redis().set(f"openvle:periodic:{name}:{slot}", job.id, nx=True, ex=ttl):
        log.info("periodic %s slot %s already taken; skipped", name, slot)
        return "duplicate"
    task = enqueue_operation(periodic.operation, target=f"periodic:{name}", requested_by="scheduler")
    return f"task {task.id}"


def register_all(cron: CronScheduler, settings: _Settings) -> None:
    for periodic in PERIODIC:
        if periodic.operation == "nodes.sync" and not settings.PVE_HOST:
            log.warning("node sync is off: PVE_HOST is not set")
            continue
        queue = get_operation(periodic.operation).queue
        schedule = {"interval": periodic.every(settings)} if periodic.every else {"cron": periodic.cron}
        cron.register(tick, queue_name=queue, args=(periodic.name,), name=periodic.name, job_timeout=60,
                      result_ttl=600, failure_ttl=86400, **schedule)
