"""Task/SubTask bookkeeping around every job, so job functions hold only their own logic.

`execute` is the function RQ runs for every Task: it opens a SubTask for the attempt, calls the
operation, and records the outcome. RQ decides retries; we only make sure RQ and the DB agree:
- a PermanentError sets the job's retries_left to 0 before RQ sees the exception (no retry);
- a final failure cancels the Task's dependents, in the DB and in RQ (RQ would leave them deferred);
- attempts that die without an exception (SIGKILL, OOM) are recorded by RQ's hooks below, and
  whatever slips past them by the reconciler (reconcile.py).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from rq import get_current_job
from rq.exceptions import AbandonedJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openvle.connections import get_redis
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import AttemptStatus, SubTask, Task, TaskDependency, TaskStatus, utcnow
from openvle.errors import PermanentError
from openvle.logs import job_context, mask
from openvle.operations import get_operation
from openvle.queues import policy
from openvle.settings import get_settings

log = logging.getLogger("openvle.tracking")

LOST_ATTEMPT = "attempt lost: the worker running it stopped before it finished"


def describe(exc: BaseException) -> str:
    """The one-line error a user sees: exception type and message, secrets masked."""
    text = str(exc).strip() or "(no message)"
    if not isinstance(exc, PermanentError):
        text = f"{type(exc).__name__}: {text}"
    return mask(text, get_settings().secrets())[:4000]


# --- the job function -------------------------------------------------------------------------------


def execute(task_id: int, operation: str, params: dict[str, Any]) -> Any:
    """Run one attempt of a Task. RQ calls this; nothing else should."""
    job = get_current_job()
    queue = job.origin if job else get_operation(operation).queue
    max_attempts = policy(queue, get_settings()).max_attempts
    worker = os.environ.get("RQ_WORKER_ID") or (job.worker_name if job else None)

    with session_scope() as session:
        attempt = _begin_attempt(session, task_id, worker)
    if attempt is None:
        log.info("task %s is no longer active; attempt skipped", task_id)
        return None

    fields = dict(queue=queue, job_id=job.id if job else "-", task_id=task_id, attempt=f"{attempt}/{max_attempts}")
    with job_context(**fields):
        log.info("%s started", operation)
        started = time.monotonic()
        ctx = TaskContext(task_id=task_id, attempt=attempt, max_attempts=max_attempts, queue=queue)
        try:
            result = get_operation(operation).func(ctx, **params)
        except BaseException as exc:  # timeouts and shutdowns count as failed attempts too
            _fail_attempt(job, task_id, attempt, queue, exc, time.monotonic() - started)
            raise
        _succeed(task_id, attempt, result)
        log.info("%s succeeded in %.2fs", operation, time.monotonic() - started)
        return result


def _begin_attempt(session: Session, task_id: int, worker: str | None) -> int | None:
    status = session.execute(select(Task.status).where(Task.id == task_id)).scalar_one_or_none()
    if status is None or status in TaskStatus.FINAL:
        return None
    last = session.execute(
        select(SubTask).where(SubTask.task_id == task_id).order_by(SubTask.attempt.desc()).limit(1)
    ).scalar_one_or_none()
    now = utcnow()
    if last is not None and last.status == AttemptStatus.PROCESSING:
        # The previous attempt died without anyone recording it; say so before starting anew.
        last.status, last.error, last.finished_at = AttemptStatus.ERROR, LOST_ATTEMPT, now
    attempt = (last.attempt if last else 0) + 1
    session.add(SubTask(task_id=task_id, attempt=attempt, worker=worker, started_at=now))
    session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(status=TaskStatus.PROCESSING, attempts=attempt, next_attempt_at=None, updated_at=now,
                started_at=Task.started_at if last else now)
    )
    return attempt


def _succeed(task_id: int, attempt: int, result: Any) -> None:
    now = utcnow()
    with session_scope() as session:
        session.execute(
            update(SubTask)
            .where(SubTask.task_id == task_id, SubTask.attempt == attempt)
            .values(status=AttemptStatus.SUCCESS, finished_at=now)
        )
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(status=TaskStatus.SUCCESS, progress=100, result=_jsonable(result), finished_at=now,
                    updated_at=now)
        )


def _fail_attempt(job: Job | None, task_id: int, attempt: int, queue: str, exc: BaseException, took: float) -> None:
    message = describe(exc)
    permanent = isinstance(exc, PermanentError)
    if permanent and job is not None:
        job.retries_left = 0  # RQ reads this right after the exception to decide on a retry
    final = permanent or job is None or not job.retries_left
    wait = None if final else policy(queue, get_settings()).wait_after(attempt)
    try:
        with session_scope() as session:
            session.execute(
                update(SubTask)
                .where(SubTask.task_id == task_id, SubTask.attempt == attempt)
                .values(status=AttemptStatus.ERROR, error=message, finished_at=utcnow())
            )
            cancelled = _close_task(session, task_id, message, final, wait)
    except Exception:  # the DB is down too: RQ still retries, the reconciler repairs the record
        log.exception("could not record the failed attempt of task %s", task_id)
        return
    if final:
        kind = "permanent error" if permanent else "no retries left"
        log.error("failed for good after %.2fs (%s): %s", took, kind, message)
        _cancel_jobs(cancelled)
    else:
        log.warning("failed after %.2fs: %s; next attempt in %ss", took, message, wait)


def _close_task(session: Session, task_id: int, message: str, final: bool, wait: int | None) -> list[str]:
    """Record a failed attempt on the Task; when final, cancel its dependents. Returns their job ids."""
    now = utcnow()
    if final:
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(status=TaskStatus.ERROR, error=message, finished_at=now, updated_at=now, next_attempt_at=None)
        )
        return cancel_dependents(session, task_id, message)
    next_at = now + _seconds(wait or 0)
    session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(status=TaskStatus.QUEUED, error=message, next_attempt_at=next_at, updated_at=now)
    )
    return []


def record_lost_attempt(task_id: int, reason: str, final: bool, queue: str) -> None:
    """An attempt ended without our code seeing it (worker killed, horse died, job abandoned)."""
    with session_scope() as session:
        task = session.get(Task, task_id)
        if task is None or task.status in TaskStatus.FINAL:
            return
        now = utcnow()
        session.execute(
            update(SubTask)
            .where(SubTask.task_id == task_id, SubTask.status == AttemptStatus.PROCESSING)
            .values(status=AttemptStatus.ERROR, error=reason, finished_at=now)
        )
        wait = None if final else policy(queue, get_settings()).wait_after(max(task.attempts, 1))
        cancelled = _close_task(session, task_id, reason, final, wait)
    with job_context(queue=queue, task_id=task_id):
        log.error("%s (%s)", reason, "failed for good" if final else f"next attempt in {wait}s")
    _cancel_jobs(cancelled)


# --- RQ hooks: attempts that end without an exception in `execute` ------------------------------------


def _task_id(job: Job) -> int | None:
    task_id = (job.meta or {}).get("task_id")
    return int(task_id) if task_id is not None else None


def on_job_failure(job: Job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's on_failure callback. Failures raised in `execute` are recorded there already; this
    handles the job RQ's StartedJobRegistry cleanup finds abandoned (its worker died)."""
    if exc_type is None or not issubclass(exc_type, AbandonedJobError):
        return
    task_id = _task_id(job)
    if task_id is not None:
        record_lost_attempt(
            task_id,
            "attempt lost: its worker stopped sending heartbeats (killed, OOM or host lost)",
            final=not job.retries_left,
            queue=job.origin,
        )


def on_job_stopped(job: Job, connection) -> None:
    """RQ's on_stopped callback (`rq` stop-job command): the Task is cancelled, not retried."""
    task_id = _task_id(job)
    if task_id is None:
        return
    reason = "stopped by an operator"
    with session_scope() as session:
        now = utcnow()
        session.execute(
            update(SubTask)
            .where(SubTask.task_id == task_id, SubTask.status == AttemptStatus.PROCESSING)
            .values(status=AttemptStatus.ERROR, error=reason, finished_at=now)
        )
        session.execute(
            update(Task)
            .where(Task.id == task_id, Task.status.in_(TaskStatus.ACTIVE))
            .values(status=TaskStatus.CANCELLED, error=reason, finished_at=now, updated_at=now)
        )
        cancelled = cancel_dependents(session, task_id, reason)
    _cancel_jobs(cancelled)


def on_horse_killed(job: Job, retpid: int, ret_val: int, rusage) -> None:
    """The worker's work_horse_killed_handler: the job's process died (signal, OOM kill)."""
    task_id = _task_id(job)
    if task_id is None:
        return
    detail = f"signal {os.WTERMSIG(ret_val)}" if os.WIFSIGNALED(ret_val) else f"exit status {ret_val}"
    record_lost_attempt(
        task_id,
        f"attempt lost: the job's process died unexpectedly ({detail})",
        final=not job.retries_left,
        queue=job.origin,
    )


# --- dependents ---------------------------------------------------------------------------------------


def cancel_dependents(session: Session, task_id: int, cause: str) -> list[str]:
    """Cancel every active Task that (transitively) depends on `task_id`; return their RQ job ids."""
    root = session.execute(select(Task.operation).where(Task.id == task_id)).scalar_one()
    reason = f"cancelled: task {task_id} ({root}) it depends on failed: {cause}"[:4000]
    job_ids: list[str] = []
    frontier = [task_id]
    now = utcnow()
    while frontier:
        rows = session.execute(
            select(Task.id, Task.rq_job_id)
            .join(TaskDependency, TaskDependency.task_id == Task.id)
            .where(TaskDependency.depends_on_id.in_(frontier), Task.status.in_(TaskStatus.ACTIVE))
        ).all()
        frontier = [row.id for row in rows]
        if frontier:
            session.execute(
                update(Task)
                .where(Task.id.in_(frontier))
                .values(status=TaskStatus.CANCELLED, error=reason, finished_at=now, updated_at=now)
            )
            job_ids += [row.rq_job_id for row in rows]
    return job_ids


def _cancel_jobs(job_ids: list[str]) -> None:
    """Cancel deferred RQ jobs so they leave the deferred registry instead of waiting forever."""
    if not job_ids:
        return
    redis = get_redis()
    for job_id in job_ids:
        try:
            Job.fetch(job_id, connection=redis).cancel()
        except (NoSuchJobError, InvalidJobOperation):
            pass
    log.warning("cancelled %d dependent job(s)", len(job_ids))


# --- helpers ------------------------------------------------------------------------------------------


def _seconds(value: int):
    import datetime as dt

    return dt.timedelta(seconds=value)


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
