"""Every Task and SubTask transition, as SQLAlchemy Core on one Connection: the worker's bookkeeper,
the work horse (tracking.py), the reconciler, the operator controls and enqueue all change a Task's
state through these functions only. The README's "A Task's life" has the state diagram.

  (new) --enqueue--> queued --an attempt opens--> processing --success--> success
                      ^  ^                          |
                      |  +--- failed or lost, ------+--- failed or lost, no attempt left ---> error
                      |       attempts left         |
                      |                             +--- CheckBack: stays processing, attempt open
  operator requeue ---+ (from error or cancelled)
  queued / processing --operator cancel, a parent failed--> cancelled (its dependents with it)
  processing with a dead worker --operator force-fail--> error

The hot path (open an attempt, close it with success) runs around every job, so it is kept to a few
plain statements.
RQ forks a fresh horse per job and SQLAlchemy caches compiled statements per process: `warm_up()`
runs every one of them once in the worker before it forks, so horses inherit them compiled.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from openvle.db.deadlocks import retry_deadlocks
from openvle.db.engine import get_engine
from openvle.db.models import AttemptStatus, SubTask, Task, TaskDependency, TaskLog, TaskStatus, utcnow

tasks = Task.__table__
subtasks = SubTask.__table__
deps = TaskDependency.__table__
task_logs = TaskLog.__table__

LOST_ATTEMPT = "attempt lost: the worker running it stopped before it finished"


# The hot path (open an attempt, close it with success) runs for every job: its statements are
# built once, with bind parameters, so each call only binds values and executes.
_LAST_ATTEMPT = (
    select(tasks.c.status, subtasks.c.attempt, subtasks.c.status.label("last_status"))
    .select_from(tasks.outerjoin(subtasks, subtasks.c.task_id == tasks.c.id))
    .where(tasks.c.id == bindparam("tid"))
    .order_by(subtasks.c.attempt.desc())
    .limit(1)
)
_THIS_ATTEMPT = (subtasks.c.task_id == bindparam("tid")) & (subtasks.c.attempt == bindparam("att"))
_MARK_LOST = update(subtasks).where(_THIS_ATTEMPT).values(
    status=AttemptStatus.ERROR, error=LOST_ATTEMPT, finished_at=bindparam("now"))
_INSERT_ATTEMPT = insert(subtasks).values(
    task_id=bindparam("tid"), attempt=bindparam("att"), worker=bindparam("worker"), started_at=bindparam("now"),
    status=AttemptStatus.PROCESSING)
_TASK_PROCESSING = dict(status=TaskStatus.PROCESSING, attempts=bindparam("att"), next_attempt_at=None,
                        updated_at=bindparam("now"))
_FIRST_PROCESSING = update(tasks).where(tasks.c.id == bindparam("tid")).values(
    **_TASK_PROCESSING, started_at=bindparam("now"))
_NEXT_PROCESSING = update(tasks).where(tasks.c.id == bindparam("tid")).values(**_TASK_PROCESSING)
_ATTEMPT_SUCCESS = update(subtasks).where(_THIS_ATTEMPT).values(
    status=AttemptStatus.SUCCESS, finished_at=bindparam("now"))
# Only an active Task succeeds: one an operator cancelled or force-failed meanwhile stays so.
_TASK_SUCCESS = update(tasks).where(tasks.c.id == bindparam("tid"), tasks.c.status.in_(TaskStatus.ACTIVE)).values(
    status=TaskStatus.SUCCESS, progress=100, result=bindparam("result", type_=tasks.c.result.type),
    error=None, finished_at=bindparam("now"), updated_at=bindparam("now"))  # earlier attempts keep theirs


def begin_attempt(conn: Connection, task_id: int, worker: str | None) -> int | None:
    """Open the next attempt of an active Task and return its number; None if the Task is over."""
    row = conn.execute(_LAST_ATTEMPT, {"tid": task_id}).first()
    if row is None or row.status in TaskStatus.FINAL:
        return None
    now = utcnow()
    last = row.attempt or 0
    if row.last_status == AttemptStatus.PROCESSING:
        # The previous attempt died without anyone recording it; say so before starting anew.
        conn.execute(_MARK_LOST, {"tid": task_id, "att": last, "now": now})
    attempt = last + 1
    values = {"tid": task_id, "att": attempt, "now": now, "worker": worker}
    conn.execute(_INSERT_ATTEMPT, values)
    conn.execute(_FIRST_PROCESSING if attempt == 1 else _NEXT_PROCESSING, values)
    return attempt


_CLAIM_TASK = update(tasks).where(tasks.c.id == bindparam("tid"), tasks.c.status.in_(TaskStatus.ACTIVE)).values(
    **_TASK_PROCESSING, started_at=func.coalesce(tasks.c.started_at, bindparam("now")))
_MARK_ALL_LOST = update(subtasks).where(
    subtasks.c.task_id == bindparam("tid"), subtasks.c.status == AttemptStatus.PROCESSING
).values(status=AttemptStatus.ERROR, error=LOST_ATTEMPT, finished_at=bindparam("now"))


def begin_known_attempt(conn: Connection, task_id: int, attempt: int, worker: str | None) -> bool:
    """Open attempt number `attempt` (known from RQ's retry count) without reading first.

    Returns False when the Task is over. Raises IntegrityError when that attempt already exists
    (a job requeued by hand): the caller then falls back to `begin_attempt`.
    """
    values = {"tid": task_id, "att": attempt, "now": utcnow(), "worker": worker}
    if conn.execute(_CLAIM_TASK, values).rowcount == 0:
        return False
    if attempt > 1:  # an earlier attempt may have died unrecorded
        conn.execute(_MARK_ALL_LOST, values)
    conn.execute(_INSERT_ATTEMPT, values)
    return True


def record_success(conn: Connection, task_id: int, attempt: int, result: Any) -> None:
    values = {"tid": task_id, "att": attempt, "now": utcnow(), "result": jsonable(result)}
    conn.execute(_ATTEMPT_SUCCESS, values)
    conn.execute(_TASK_SUCCESS, values)


def record_failure(
    conn: Connection, task_id: int, attempt: int | None, message: str, final: bool, wait: int | None
) -> list[str]:
    """Close the failed attempt (or every open one when `attempt` is None) and update the Task.

    When `final`, the Task is in error and its dependents are cancelled: returns their RQ job ids.
    """
    now = utcnow()
    which = subtasks.c.attempt == attempt if attempt is not None else subtasks.c.status == AttemptStatus.PROCESSING
    conn.execute(
        update(subtasks)
        .where(subtasks.c.task_id == task_id, which)
        .values(status=AttemptStatus.ERROR, error=message, finished_at=now)
    )
    if final:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id)
            .values(status=TaskStatus.ERROR, error=message, finished_at=now, updated_at=now, next_attempt_at=None)
        )
        return cancel_dependents(conn, task_id, message)
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id)
        .values(status=TaskStatus.QUEUED, error=message, updated_at=now,
                next_attempt_at=now + dt.timedelta(seconds=wait or 0))
    )
    return []


def record_cancelled(conn: Connection, task_id: int, reason: str) -> list[str]:
    """Cancel an active Task (closing any open attempt) and its dependents; returns all their job ids."""
    now = utcnow()
    conn.execute(
        update(subtasks)
        .where(subtasks.c.task_id == task_id, subtasks.c.status == AttemptStatus.PROCESSING)
        .values(status=AttemptStatus.ERROR, error=reason, finished_at=now)
    )
    conn.execute(
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.status.in_(TaskStatus.ACTIVE))
        .values(status=TaskStatus.CANCELLED, error=reason, finished_at=now, updated_at=now)
    )
    own = conn.execute(select(tasks.c.rq_job_id).where(tasks.c.id == task_id)).scalar_one()
    return [own, *cancel_dependents(conn, task_id, reason, outcome="was cancelled")]


def cancel_dependents(conn: Connection, task_id: int, cause: str, outcome: str = "failed") -> list[str]:
    """Cancel every active Task that (transitively) depends on `task_id`; return their RQ job ids."""
    root = conn.execute(select(tasks.c.operation).where(tasks.c.id == task_id)).scalar_one()
    reason = f"cancelled: task {task_id} ({root}) it depends on {outcome}: {cause}"[:4000]
    job_ids: list[str] = []
    frontier = [task_id]
    now = utcnow()
    while frontier:
        rows = conn.execute(
            select(tasks.c.id, tasks.c.rq_job_id)
            .select_from(tasks.join(deps, deps.c.task_id == tasks.c.id))
            .where(deps.c.depends_on_id.in_(frontier), tasks.c.status.in_(TaskStatus.ACTIVE))
        ).all()
        frontier = [row.id for row in rows]
        if frontier:
            conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(frontier))
                .values(status=TaskStatus.CANCELLED, error=reason, finished_at=now, updated_at=now)
            )
            job_ids += [row.rq_job_id for row in rows]
    return job_ids


def born_cancelled(conn: Connection, task_id: int, reason: str, now: dt.datetime) -> None:
    """A new Task whose parent already failed: RQ would defer it forever, so it never queues."""
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(
        status=TaskStatus.CANCELLED, finished_at=now, error=reason))


def requeue_after_unrecorded_loss(conn: Connection, task_id: int) -> None:
    """RQ already runs (or queued) the next attempt of an attempt whose end nobody recorded."""
    conn.execute(update(subtasks).where(subtasks.c.task_id == task_id,
                                        subtasks.c.status == AttemptStatus.PROCESSING)
                 .values(status=AttemptStatus.ERROR, error="attempt lost: its end was never recorded",
                         finished_at=utcnow()))
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(status=TaskStatus.QUEUED))


def close_finished(conn: Connection, task_id: int, attempt: int, result: Any) -> None:
    """The success nobody wrote (RQ finished the job): the open attempt and the Task, with RQ's result."""
    conn.execute(update(subtasks).where(subtasks.c.task_id == task_id,
                                        subtasks.c.status == AttemptStatus.PROCESSING)
                 .values(status=AttemptStatus.SUCCESS, finished_at=utcnow()))
    record_success(conn, task_id, attempt, result)


def mark(conn: Connection, task_id: int, status: str) -> None:
    """Set the status as repairs find it (its job queued again, or queued anew); a final one closes it."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if status in TaskStatus.FINAL:
        values["finished_at"] = now
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))


def claim_unchanged(conn: Connection, task_id: int, status: str, attempts: int) -> bool:
    """Lock the Task's row if it is still as an operator's check saw it; False if a worker moved it."""
    return conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == status,
                                            tasks.c.attempts == attempts)
                        .values(updated_at=utcnow())).rowcount == 1


def requeue_by_operator(conn: Connection, task_id: int, job_id: str, by: str, attempts: int,
                        max_attempts: int) -> None:
    """An ended Task queued again under a new RQ job, with `max_attempts` in all; its history says so."""
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(
        status=TaskStatus.QUEUED, rq_job_id=job_id, error=None, progress=0, finished_at=None,
        next_attempt_at=None, message=f"requeued by {by}", max_attempts=max_attempts, updated_at=utcnow()))
    add_log(conn, task_id, attempts, "warning", f"requeued by {by} after {attempts} attempt(s)")


def set_progress(conn: Connection, task_id: int, percent: int, message: str | None) -> None:
    values: dict[str, Any] = {"progress": percent, "updated_at": utcnow()}
    if message is not None:
        values["message"] = message[:500]
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))


def add_log(conn: Connection, task_id: int, attempt: int, level: str, message: str) -> None:
    conn.execute(insert(task_logs).values(task_id=task_id, attempt=attempt, level=level[:8], message=message,
                                          created_at=utcnow()))


# Workers starting together (compose starts every replica at once) write to the same new index
# pages here, and InnoDB may pick one of them as a deadlock victim: a warm-up is safe to repeat.
@retry_deadlocks("warming up the bookkeeping statements")
def warm_up() -> None:
    """Run every statement above once, in a transaction that is rolled back (see module doc)."""
    with get_engine().connect() as conn:
        transaction = conn.begin()
        try:
            task_id = conn.execute(
                insert(tasks).values(operation="warm-up", queue="core_periodic", params={}, status="queued",
                                     progress=0, attempts=0, max_attempts=1, rq_job_id=uuid.uuid4().hex,
                                     created_at=utcnow(), updated_at=utcnow())
            ).inserted_primary_key[0]
            begin_attempt(conn, task_id, "warm-up")
            set_progress(conn, task_id, 50, "warm-up")
            set_progress(conn, task_id, 60, None)
            add_log(conn, task_id, 1, "info", "warm-up")
            record_failure(conn, task_id, 1, "warm-up", final=False, wait=1)
            begin_attempt(conn, task_id, "warm-up")
            record_success(conn, task_id, 2, None)
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(status="queued"))
            begin_known_attempt(conn, task_id, 3, "warm-up")
            record_failure(conn, task_id, None, "warm-up", final=True, wait=None)
            record_cancelled(conn, task_id, "warm-up")
        finally:
            transaction.rollback()


def jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else its repr (a job may return anything)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
