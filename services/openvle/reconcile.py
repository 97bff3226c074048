"""Repair Tasks whose record disagrees with their RQ job, so nothing stays queued or processing forever.

Disagreements come from crashes between two writes: a worker SIGKILLed mid-job, Redis restarted
without its data, an enqueue that failed after the Task was committed, a DB outage while a job
ended. Only Tasks untouched for RECONCILE_GRACE seconds are looked at, so a job that is simply
between its two writes is never "repaired".
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import select

from openvle import dead_workers, pacing, records
from openvle.connections import get_redis
from openvle.db.engine import get_engine, session_scope
from openvle.db.models import Task, TaskDependency, TaskStatus, utcnow
from openvle.enqueue import enqueue_job, missing_jobs
from openvle.queues import QUEUE_NAMES, policy
from openvle.settings import get_settings
from openvle.tracking import (
    allowed_attempts,
    cancel_jobs,
    continuing_attempt,
    record_lost_attempt,
    task_log_context,
)

log = logging.getLogger("openvle.reconcile")

BATCH = 500


@dataclass
class Report:
    checked: int = 0
    requeued: list[int] = field(default_factory=list)
    lost_attempts: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    woken_clones: int = 0

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def reconcile(grace_seconds: int | None = None) -> Report:
    settings = get_settings()
    redis = get_redis()
    # Jobs of workers that died (their process gone, their heartbeat late) go to RQ as abandoned now,
    # not a minute later; and their schedulers' locks are freed for a live worker to take.
    dead_workers.reap(redis, QUEUE_NAMES, settings.WORKER_JOB_MONITORING_INTERVAL)
    dead_workers.free_dead_scheduler_locks(redis, QUEUE_NAMES)
    # Let RQ find abandoned jobs on every queue, even those no live worker listens on.
    for name in QUEUE_NAMES:
        StartedJobRegistry(name, connection=redis).cleanup()

    # Clone slots that lapsed (their holder died) are released by nobody: start who waits for them.
    report_woken = pacing.wake_waiters()

    grace = settings.RECONCILE_GRACE if grace_seconds is None else grace_seconds
    cutoff = utcnow() - dt.timedelta(seconds=grace)
    report = Report(woken_clones=report_woken)
    last_id = 0
    while True:
        with session_scope() as session:
            tasks = session.execute(
                select(Task)
                .where(Task.status.in_(TaskStatus.ACTIVE), Task.updated_at < cutoff, Task.id > last_id)
                .order_by(Task.id)
                .limit(BATCH)
            ).scalars().all()
        if not tasks:
            return report
        last_id = tasks[-1].id
        jobs = Job.fetch_many([t.rq_job_id for t in tasks], connection=redis)
        for task, job in zip(tasks, jobs, strict=True):
            report.checked += 1
            with task_log_context(task.queue, task.rq_job_id, task.id, task.attempts, task.max_attempts):
                _repair(task, job, report)


def _repair(task: Task, job: Job | None, report: Report) -> None:
    status = job.get_status(refresh=False) if job is not None else None

    if job is None:
        _recreate_job(task, report)
    elif status in (JobStatus.QUEUED, JobStatus.SCHEDULED) and not _where_it_says(job, status):
        # Its status says it waits in a queue or the schedule, but it is in neither: nobody would
        # ever run it (a write lost between two steps, a crash mid-move). CheckBack jobs included.
        Queue(job.origin, connection=get_redis()).enqueue_job(job, at_front=True)
        with get_engine().begin() as conn:
            records.mark(conn, task.id, task.status)
        log.warning("job was %s in name only; put back on its queue", status.value)
        report.requeued.append(task.id)
    elif status == JobStatus.FAILED:
        record_lost_attempt(task.id, _rq_failure(job), final=True, queue=task.queue)
        report.failed.append(task.id)
    elif status == JobStatus.FINISHED:
        _close_finished(task, job)
        log.warning("RQ finished the job but the Task was never closed; marked success")
        report.succeeded.append(task.id)
    elif status in (JobStatus.CANCELED, JobStatus.STOPPED):
        _cancel(task.id, f"its job was {status.value} in RQ")
        report.cancelled.append(task.id)
    elif status == JobStatus.DEFERRED:
        _check_parents(task, report)
    elif (
        status in (JobStatus.QUEUED, JobStatus.SCHEDULED)
        and task.status == TaskStatus.PROCESSING
        and continuing_attempt(job) != task.attempts  # not a job waiting on purpose (CheckBack)
    ):
        # RQ already retried an attempt whose end nobody recorded.
        with get_engine().begin() as conn:
            records.requeue_after_unrecorded_loss(conn, task.id)
        log.warning("recorded a lost attempt; RQ has the next one %s", status.value)
        report.lost_attempts.append(task.id)


def _where_it_says(job: Job, status: JobStatus) -> bool:
    """Whether the job is really in its queue (queued) or its queue's schedule (scheduled); read
    twice, so a job a worker takes (or the scheduler moves) between the two reads is not repaired."""
    redis = get_redis()
    for _ in range(2):
        if status == JobStatus.QUEUED and redis.lpos(Queue(job.origin, connection=redis).key, job.id) is not None:
            return True
        if status == JobStatus.SCHEDULED and redis.zscore(
                ScheduledJobRegistry(job.origin, connection=redis).key, job.id) is not None:
            return True
        now = job.get_status(refresh=True)
        if now != status:
            return True  # it moved on (taken, rescheduled, finished): not ours to repair now
    return False


def _recreate_job(task: Task, report: Report) -> None:
    """The job is gone from Redis (never enqueued, or Redis lost it): enqueue it again."""
    queue_policy = policy(task.queue, get_settings())
    used = task.attempts
    allowed = allowed_attempts(task.queue, task.max_attempts)
    if task.status == TaskStatus.PROCESSING:
        record_lost_attempt(task.id, "attempt lost: its job vanished from Redis",
                            final=used >= allowed, queue=task.queue)
        if used >= allowed:
            report.failed.append(task.id)
            return
    elif used >= allowed:
        record_lost_attempt(task.id, "its job vanished from Redis and no attempts are left", True, task.queue)
        report.failed.append(task.id)
        return
    with session_scope() as session:
        parents = list(session.execute(
            select(Task)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task.id)
        ).scalars())
        session.expunge_all()
    if any(p.status in (TaskStatus.ERROR, TaskStatus.CANCELLED) for p in parents):
        _cancel(task.id, "a task it depends on did not succeed")
        report.cancelled.append(task.id)
        return
    waiting = [p for p in parents if p.status != TaskStatus.SUCCESS]
    # RQ takes a dependency whose job is gone for met: the parents come back first.
    gone = set(missing_jobs([p.rq_job_id for p in waiting]))
    for parent in waiting:
        if parent.rq_job_id in gone:
            with task_log_context(parent.queue, parent.rq_job_id, parent.id, parent.attempts, parent.max_attempts):
                _recreate_job(parent, report)
    if missing_jobs([p.rq_job_id for p in waiting]):
        log.warning("a task it depends on could not be queued again; left for the next round")
        return
    waiting_on = [p.rq_job_id for p in waiting]
    # Attempts go on from the used ones (a requeued Task allows more than its queue's policy).
    enqueue_job(task, queue_policy, waiting_on, retries_left=allowed - used - 1, first_attempt=used + 1)
    with get_engine().begin() as conn:
        records.mark(conn, task.id, TaskStatus.QUEUED)
    log.warning("job was missing from Redis; queued again (%d attempt(s) used)", used)
    report.requeued.append(task.id)


def _check_parents(task: Task, report: Report) -> None:
    with session_scope() as session:
        dead = session.execute(
            select(Task.id)
            .join(TaskDependency, TaskDependency.depends_on_id == Task.id)
            .where(TaskDependency.task_id == task.id, Task.status.in_((TaskStatus.ERROR, TaskStatus.CANCELLED)))
        ).first()
    if dead is not None:
        _cancel(task.id, f"task {dead.id} it depends on did not succeed")
        report.cancelled.append(task.id)


def _close_finished(task: Task, job: Job) -> None:
    """The success nobody wrote: the Task, and its open attempt (the one RQ ran), with RQ's result."""
    try:
        result = job.return_value(refresh=True)
    except Exception:  # a result RQ cannot read back must not keep the Task open
        result = None
    with get_engine().begin() as conn:
        records.close_finished(conn, task.id, task.attempts, result)


def _cancel(task_id: int, reason: str) -> None:
    with get_engine().begin() as conn:
        job_ids = records.record_cancelled(conn, task_id, f"cancelled: {reason}")
    cancel_jobs(job_ids)
    log.warning("cancelled: %s", reason)


def _rq_failure(job: Job) -> str:
    latest = job.latest_result()
    text = (latest.exc_string if latest is not None and latest.exc_string else "") or "RQ marked the job failed"
    return "failed in RQ: " + text.strip().splitlines()[-1][:500]
