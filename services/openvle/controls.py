"""Operator controls on Tasks: cancel, requeue, force-fail. Part of the Task runtime.

Each tells the database and RQ the same thing in one step, so the reconciler finds nothing to
repair afterwards: the database first, conditional on the state that was checked (a worker that
took the job meanwhile wins, and the control says so), then RQ. A Task the database already calls
cancelled or failed is never run or closed otherwise by a worker (records.py).

- cancel: a Task waiting in RQ (queued, scheduled for a retry or a check-back, deferred behind a
  dependency). Its dependents are cancelled with it and say why.
- requeue: a Task that failed for good or was cancelled: a new series of attempts with the queue's
  retries, numbered after the old ones, which are kept.
- force-fail: a Task stuck in processing whose worker is gone (killed, host lost): the attempt is
  closed as lost, the Task fails, its dependents are cancelled, RQ's registries agree.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from sqlalchemy import Connection, select

from openvle import records
from openvle.connections import get_redis
from openvle.db.engine import get_engine
from openvle.db.models import Task, TaskDependency, TaskStatus
from openvle.enqueue import enqueue_job
from openvle.logs import job_context
from openvle.queues import policy
from openvle.settings import get_settings
from openvle.tracking import cancel_jobs

log = logging.getLogger("openvle.controls")

CANCEL, REQUEUE, FORCE_FAIL = "cancel", "requeue", "force-fail"
ACTIONS = (CANCEL, REQUEUE, FORCE_FAIL)
# Which Tasks each control may touch at all (the database's view); the RQ job decides the rest.
ELIGIBLE = {
    CANCEL: (TaskStatus.QUEUED, TaskStatus.PROCESSING),
    REQUEUE: (TaskStatus.ERROR, TaskStatus.CANCELLED),
    FORCE_FAIL: (TaskStatus.PROCESSING,),
}
WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)

tasks = Task.__table__


@dataclass(frozen=True)
class Outcome:
    task_id: int
    done: bool
    reason: str  # what was done, or why not


def _row(conn: Connection, task_id: int):
    return conn.execute(select(tasks.c.id, tasks.c.status, tasks.c.attempts, tasks.c.rq_job_id, tasks.c.queue,
                               tasks.c.operation).where(tasks.c.id == task_id)).first()


def _job(job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=get_redis())
    except NoSuchJobError:
        return None


def _runner(job: Job) -> tuple[str | None, bool]:
    """(the worker running the job, whether it is alive). A worker running a job heartbeats every
    WORKER_JOB_MONITORING_INTERVAL s; three missed heartbeats and it is gone (killed, host lost),
    though RQ keeps its registration for a while longer."""
    name = job.worker_name
    worker = next((w for w in Worker.all(connection=get_redis()) if w.name == name), None) if name else None
    if worker is None or worker.last_heartbeat is None:
        return name, False
    beat = worker.last_heartbeat
    beat = beat.replace(tzinfo=dt.UTC) if beat.tzinfo is None else beat
    silent = time.time() - beat.timestamp()
    return name, silent <= 3 * get_settings().WORKER_JOB_MONITORING_INTERVAL + 2


def why_not(action: str, status: str, job: Job | None) -> str | None:
    """None when `action` may act on a Task in `status` whose RQ job is `job`; else why not."""
    if status not in ELIGIBLE[action]:
        wanted = {CANCEL: "a queued, scheduled or deferred Task", REQUEUE: "a Task that failed for good or was "
                  "cancelled", FORCE_FAIL: "a Task stuck in processing"}[action]
        done = {CANCEL: "cancelled", REQUEUE: "requeued", FORCE_FAIL: "force-failed"}[action]
        return f"it is {status}: only {wanted} can be {done}"
    job_status = job.get_status(refresh=False) if job is not None else None
    if action == CANCEL and (job_status == JobStatus.STARTED or
                             (status == TaskStatus.PROCESSING and job_status not in WAITING)):
        return "it is running: wait for it, or force-fail it if its worker is gone"
    if action == FORCE_FAIL:
        if job_status in WAITING:
            return f"it is not stuck but waiting in RQ ({job_status.value}): cancel it instead"
        if job_status == JobStatus.STARTED:
            name, alive = _runner(job)
            if alive:
                return f"its worker {name} is alive and running it: wait for it (or for its timeout)"
    return None


def check(action: str, task_id: int, requeued_first: frozenset[int] = frozenset()) -> Outcome:
    """What `action` would do to the Task, without doing it (the dry run). `requeued_first`: Tasks
    the same request requeues before this one (a chain asked for at once: parents go first)."""
    row, _, reason = _looked_at(action, task_id)
    if reason is None and action == REQUEUE:
        reason = _blocked_by_parents(task_id, requeued_first)
    return Outcome(task_id, reason is None, reason or f"would {action} it")


def apply(action: str, task_id: int, by: str) -> Outcome:
    return {CANCEL: cancel, REQUEUE: requeue, FORCE_FAIL: force_fail}[action](task_id, by)


def _guard(conn: Connection, row) -> bool:
    """Lock the Task row if it is still as we checked it (status and attempts); False if not."""
    return records.claim_unchanged(conn, row.id, row.status, row.attempts)


def _looked_at(action: str, task_id: int):
    """(the Task's row, its RQ job, why `action` may not touch it or None)."""
    with get_engine().connect() as conn:
        row = _row(conn, task_id)
    if row is None:
        return None, None, "it does not exist"
    job = _job(row.rq_job_id)
    return row, job, why_not(action, row.status, job)


def cancel(task_id: int, by: str) -> Outcome:
    row, job, reason = _looked_at(CANCEL, task_id)
    if reason is not None:
        return Outcome(task_id, False, reason)
    with get_engine().begin() as conn:
        if not _guard(conn, row):
            return Outcome(task_id, False, "it changed meanwhile (a worker took it): look again")
        job_ids = records.record_cancelled(conn, task_id, f"cancelled by {by}")
    cancel_jobs(job_ids)
    with job_context(queue=row.queue, job_id=row.rq_job_id, task_id=task_id):
        log.warning("cancelled by %s (%d dependent(s) with it)", by, len(job_ids) - 1)
    return Outcome(task_id, True, f"cancelled, with {len(job_ids) - 1} dependent(s)")


def _parents(conn: Connection, task_id: int):
    return conn.execute(select(tasks.c.id, tasks.c.status, tasks.c.rq_job_id)
                        .join(TaskDependency.__table__, TaskDependency.depends_on_id == tasks.c.id)
                        .where(TaskDependency.task_id == task_id)).all()


def _blocked_by_parents(task_id: int, requeued_first: frozenset[int] = frozenset()) -> str | None:
    with get_engine().connect() as conn:
        dead = [p.id for p in _parents(conn, task_id)
                if p.status in (TaskStatus.ERROR, TaskStatus.CANCELLED) and p.id not in requeued_first]
    return f"task {dead[0]} it depends on did not succeed: requeue that one first" if dead else None


def requeue(task_id: int, by: str) -> Outcome:
    with get_engine().connect() as conn:
        row = _row(conn, task_id)
    if row is None:
        return Outcome(task_id, False, "it does not exist")
    reason = why_not(REQUEUE, row.status, None) or _blocked_by_parents(task_id)
    if reason is not None:
        return Outcome(task_id, False, reason)
    queue_policy = policy(row.queue, get_settings())
    new_job_id = uuid.uuid4().hex
    with get_engine().begin() as conn:
        if not _guard(conn, row):
            return Outcome(task_id, False, "it changed meanwhile: look again")
        records.requeue_by_operator(conn, task_id, new_job_id, by, row.attempts,
                                    max_attempts=row.attempts + queue_policy.max_attempts)
        parents = _parents(conn, task_id)
        task = conn.execute(select(Task).where(tasks.c.id == task_id)).first()
    old = _job(row.rq_job_id)
    if old is not None:
        old.delete()  # out of the failed (or canceled) registry: RQ holds only the new series
    detached = Task(id=task.id, operation=task.operation, target=task.target, params=task.params, queue=task.queue,
                    rq_job_id=new_job_id)
    waiting_on = [p.rq_job_id for p in parents if p.status != TaskStatus.SUCCESS]
    with job_context(queue=row.queue, job_id=new_job_id, task_id=task_id):
        try:
            enqueue_job(detached, queue_policy, waiting_on, first_attempt=row.attempts + 1)
        except RedisError as exc:  # saved as queued: the reconciler enqueues it once Redis answers
            log.warning("requeued by %s but not queued (%s); the reconciler will queue it", by, type(exc).__name__)
            return Outcome(task_id, True, "requeued; Redis did not answer, so it is queued as soon as it does")
        log.warning("requeued by %s after %d attempt(s)", by, row.attempts)
    last = row.attempts + queue_policy.max_attempts
    return Outcome(task_id, True, f"requeued: attempts {row.attempts + 1} to {last}")


def force_fail(task_id: int, by: str) -> Outcome:
    row, job, reason = _looked_at(FORCE_FAIL, task_id)
    if reason is not None:
        return Outcome(task_id, False, reason)
    worker = job.worker_name if job is not None else None
    message = f"failed by {by}: its worker{' ' + worker if worker else ''} is gone"
    with get_engine().begin() as conn:
        if not _guard(conn, row):
            return Outcome(task_id, False, "it changed meanwhile: look again")
        cancelled = records.record_failure(conn, task_id, None, message, final=True, wait=None)
    if job is not None and job.get_status(refresh=True) not in (JobStatus.FAILED, JobStatus.FINISHED):
        redis = get_redis()
        started = StartedJobRegistry(job.origin, connection=redis)
        stale = [m for m in redis.zrange(started.key, 0, -1) if m.decode().split(":")[0] == job.id]
        with redis.pipeline() as pipe:
            if stale:
                pipe.zrem(started.key, *stale)
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            FailedJobRegistry(job.origin, connection=redis).add(
                job, ttl=policy(row.queue, get_settings()).failure_ttl, exc_string=message, pipeline=pipe)
            pipe.execute()
    cancel_jobs(cancelled)
    with job_context(queue=row.queue, job_id=row.rq_job_id, task_id=task_id):
        log.warning("%s (%d dependent(s) cancelled)", message, len(cancelled))
    return Outcome(task_id, True, f"failed, with {len(cancelled)} dependent(s) cancelled")
