"""Nothing stays queued or processing forever: lost workers, lost jobs, lost writes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import update

from conftest import wait_for
from helpers import load_task, settled
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Task
from openvle.enqueue import enqueue_operation
from openvle.errors import QueueUnavailable
from openvle.reconcile import reconcile


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def horse_of(worker_pid: int) -> int:
    """The work horse is the worker's child that leads its own process group (RQ calls setpgrp in it);
    the RQ scheduler child stays in the worker's group. The Task is processing before the fork (the
    worker opens the attempt first), so the horse may not be there yet: wait for it."""

    def horse() -> int | None:
        for pid in children(worker_pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid:
                return pid
        return None

    return wait_for(horse, 15, f"a work horse under pid {worker_pid}", interval=0.05)


@pytest.mark.slow
def test_sigkilled_worker_does_not_leave_its_task_processing(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.moodle", {"duration": 6})
    wait_for(lambda: load_task(task.id).status == "processing", 15, "the job to start", worker)
    time.sleep(1)

    # What `docker kill` does to the container: every process dies at once, nothing is written.
    os.kill(horse_of(worker.proc.pid), signal.SIGKILL)
    os.killpg(worker.proc.pid, signal.SIGKILL)
    killed_at = time.time()
    assert load_task(task.id).status == "processing"

    restarted = start_role("worker")  # compose restarts the container
    done = wait_for(lambda: settled(task.id), 200, "the task to recover", restarted, interval=1)

    first, second = done.subtasks
    assert first.status == "error" and first.error.startswith("attempt lost")
    lost_after = first.finished_at.timestamp() - killed_at + _utc_offset()
    assert lost_after < 130, f"the lost attempt was recorded {lost_after:.0f}s after the kill"
    assert (second.attempt, second.status) == (2, "success")
    assert done.status == "success"


def _utc_offset() -> float:
    # SubTask times are naive UTC; .timestamp() read them as local time.
    return time.mktime(time.localtime()) - time.mktime(time.gmtime())


def test_a_killed_job_process_is_recorded_and_retried(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.pve_vm_actions", {"duration": 4})
    wait_for(lambda: load_task(task.id).status == "processing", 15, "the job to start", worker)

    os.kill(horse_of(worker.proc.pid), signal.SIGKILL)  # e.g. the OOM killer

    done = wait_for(lambda: settled(task.id), 40, "the retry", worker)
    first, second = done.subtasks
    assert first.error == "attempt lost: the job's process died unexpectedly (signal 9)"
    assert second.status == "success" and done.status == "success"


def test_a_task_saved_while_redis_was_down_is_queued_later(settings_env, start_role, clean):
    settings_env(REDIS_URL="redis://127.0.0.1:1/0")
    with pytest.raises(QueueUnavailable) as error:
        enqueue_operation("demo.mails", {"duration": 0.1})
    task_id = error.value.task_id
    assert load_task(task_id).status == "queued"

    settings_env()  # Redis is back
    report = reconcile(grace_seconds=0)

    assert report.requeued == [task_id]
    worker = start_role("worker")
    done = wait_for(lambda: settled(task_id), 20, "the requeued task", worker)
    assert done.status == "success"


def test_jobs_lost_with_redis_data_are_recreated(start_role, clean):
    task = enqueue_operation("demo.guacamole", {})
    clean.redis.flushdb()  # Redis restarted without persistence

    assert reconcile(grace_seconds=0).requeued == [task.id]
    worker = start_role("worker")
    assert wait_for(lambda: settled(task.id), 20, "the task", worker).status == "success"


def test_a_task_rq_failed_while_the_db_was_away_is_closed(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.mails", {"permanent": True})
    child = enqueue_operation("demo.mails", {}, depends_on=[task])
    wait_for(lambda: settled(task.id), 20, "the failure", worker)
    # The DB write of that failure was lost (say, MariaDB restarted at that moment).
    with session_scope() as session:
        session.execute(update(Task).where(Task.id.in_([task.id, child.id])).values(status="processing"))

    report = reconcile(grace_seconds=0)

    assert report.failed == [task.id]
    failed = load_task(task.id)
    assert failed.status == "error" and "demo: asked to fail permanently" in failed.error
    assert load_task(child.id).status == "cancelled"


def test_a_deferred_job_behind_a_failed_parent_is_cancelled(clean):
    parent = enqueue_operation("demo.mails", {})
    child = enqueue_operation("demo.mails", {}, depends_on=[parent])
    assert Job.fetch(child.rq_job_id, connection=get_redis()).get_status() == JobStatus.DEFERRED
    # The parent failed but the cascade never ran (its worker died between the two writes).
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == parent.id).values(status="error"))

    report = reconcile(grace_seconds=0)

    assert child.id in report.cancelled
    assert load_task(child.id).status == "cancelled"
    assert Job.fetch(child.rq_job_id, connection=get_redis()).get_status() == JobStatus.CANCELED


def test_reconcile_leaves_healthy_tasks_alone(clean):
    queued = enqueue_operation("demo.mails", {})
    report = reconcile(grace_seconds=0)
    assert report.checked == 1
    assert not (report.requeued or report.failed or report.cancelled or report.lost_attempts)
    assert load_task(queued.id).status == "queued"


def test_reconcile_leaves_a_waiting_task_alone(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.mails", {"wait_checks": 4})
    wait_for(lambda: load_task(task.id).progress >= 25, 15, "the task to wait", worker)

    report = reconcile(grace_seconds=0)

    assert report.lost_attempts == [] and report.failed == []
    done = wait_for(lambda: settled(task.id), 20, "the task", worker)
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "success")]
