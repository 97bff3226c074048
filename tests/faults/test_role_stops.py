"""Roles stopped and doubled: SIGTERM to each worker role mid-job (warm shutdown, nothing lost) and
two schedulers for three periodic cycles (every periodic Task once)."""

from __future__ import annotations

import time

import pytest
from rq.cron import CronScheduler
from scenario import FAST_RECOVERY, Clock, Counts, report
from sqlalchemy import select

from conftest import wait_for
from helpers import load_task, settled
from openvle.db.engine import session_scope
from openvle.db.models import Task
from openvle.enqueue import enqueue_operation
from openvle.periodic import BY_NAME, slot_of
from openvle.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # whole deploys and archives, one worker each

ROLE_QUEUE = {"worker": "guacamole", "worker-vm-clone": "pve_vm_clone", "worker-periodic": "pve_periodic"}


def test_sigterm_to_each_worker_role_mid_job_finishes_the_job_and_loses_nothing(start_role, settings_env):
    settings_env(**FAST_RECOVERY)
    counts = Counts("SIGTERM to worker, worker-vm-clone, worker-periodic mid-job")
    clock = Clock()
    for role, queue in ROLE_QUEUE.items():
        proc = start_role(role, **FAST_RECOVERY)
        running = enqueue_operation(f"demo.{queue}", {"duration": 4})
        waiting = enqueue_operation(f"demo.{queue}", {"duration": 0.1})
        wait_for(lambda t=running: load_task(t.id).status == "processing", 30, f"{role}'s job to start", proc)
        code = proc.stop(timeout=60)  # SIGTERM: RQ's warm shutdown
        assert code == 0, proc.output[-2000:]
        assert load_task(running.id).status == "success", f"{role}: the job in hand is finished before exit"
        assert load_task(waiting.id).status == "queued"  # not taken: the next worker runs it
        again = start_role(role, **FAST_RECOVERY)
        done = wait_for(lambda t=waiting: settled(t.id), 60, f"{role}'s next job", again)
        counts.tasks_lost += done.status != "success"
        counts.tasks_stuck += load_task(running.id).status in ("queued", "processing")
        again.stop()
    counts.settle_seconds = clock.seconds()
    report(counts)
    assert counts.tasks_lost == counts.tasks_stuck == 0, counts.line()


def test_two_schedulers_for_three_cycles_make_every_periodic_task_once(start_role, settings_env):
    env = {**FAST_RECOVERY, "SCHEDULER_HEARTBEAT_INTERVAL": "10", "RECONCILE_INTERVAL": "10"}
    settings_env(**env)
    from openvle.connections import get_redis

    worker = start_role("worker", **env)
    first = start_role("scheduler", **env)
    wait_for(lambda: len(CronScheduler.all(connection=get_redis())) == 1, 60, "the first scheduler", first)
    time.sleep(3)  # out of phase, as two containers would be
    second = start_role("scheduler", **env)
    wait_for(lambda: len(CronScheduler.all(connection=get_redis())) == 2, 60, "the second scheduler", second)
    clock = Clock()

    def cycles() -> set[int]:
        with session_scope() as session:
            made = session.execute(select(Task.created_at).where(Task.operation == "housekeeping.heartbeat")).all()
        return {slot_of(BY_NAME["heartbeat"], c.created_at.timestamp(), get_settings()) for c in made}

    wait_for(lambda: len(cycles()) >= 4, 120, "three more cycles", second)
    first.stop()
    second.stop()
    wait_for(lambda: not _active(), 60, "the periodic Tasks to finish", worker)
    with session_scope() as session:
        per_op = {op: session.execute(select(Task.created_at).where(Task.operation == op)).scalars().all()
                  for op in ("housekeeping.heartbeat", "housekeeping.reconcile")}
    counts = Counts("two schedulers, three periodic cycles", settle_seconds=clock.seconds())
    twice = 0
    for op, created in per_op.items():
        # Each cycle (slot) is claimed once in Redis by one tick; a claim makes one Task, or none when
        # the last one is still queued. More Tasks than claimed cycles: one was made twice. (Counting
        # by creation times took a tick run late on a busy machine for an extra cycle.)
        name = op.split(".", 1)[1]
        claimed = len(get_redis().keys(f"openvle:periodic:{name}:*"))
        twice += max(0, len(created) - claimed)
        counts.notes.append(f"{op}: {len(created)} Tasks for {claimed} claimed cycles")
    counts.notes.append(f"periodic Tasks made twice: {twice}")
    report(counts)
    assert twice == 0 and len(per_op["housekeeping.heartbeat"]) >= 4, counts.line()


def _active() -> bool:
    with session_scope() as session:
        return bool(session.execute(select(Task.id).where(Task.status.in_(("queued", "processing")))).first())
