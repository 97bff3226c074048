"""The one way to start an operation: write its Task, then enqueue its RQ job with the queue's policy.

The Task row is committed before the job exists, so nothing is lost when Redis is briefly away: the
Task stays `queued` without a job and the reconciler enqueues it (see reconcile.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis.exceptions import RedisError
from rq import Callback, Queue, Retry
from rq.job import Dependency, Job
from sqlalchemy import bindparam, insert, select

from openvle import records, targets
from openvle.connections import get_redis
from openvle.db.engine import get_engine, session_scope
from openvle.db.models import Task, TaskDependency, TaskStatus, utcnow
from openvle.errors import QueueUnavailable
from openvle.logs import job_context
from openvle.operations import get_operation
from openvle.queues import QueuePolicy, policy
from openvle.settings import get_settings
from openvle.targets import Target

log = logging.getLogger("openvle.enqueue")

# Built once: enqueue runs for every operation, often in bursts (an event's fan-out).
_INSERT_TASK = insert(Task.__table__)
_INSERT_DEPENDENCY = insert(TaskDependency.__table__)
_PARENTS = select(Task.id, Task.status, Task.rq_job_id, Task.operation).where(
    Task.id.in_(bindparam("ids", expanding=True)))
# The parents are locked before the child's rows are written (MariaDB; taking the lock after the
# dependency rows' foreign-key checks would upgrade a shared lock and deadlock), and read again
# after them (SQLite holds its write lock only from the first write on). A parent failing for good
# meanwhile either committed first (we see it) or waits for our commit and then finds and cancels
# us: never a child left queued behind a failure.
_LOCK_PARENTS = _PARENTS.with_for_update()


def enqueue_operation(
    operation: str,
    params: dict[str, Any] | None = None,
    *,
    target: str | None = None,
    requested_by: str | None = None,
    depends_on: Sequence[Task | int] = (),
    at_front: bool = False,
) -> Task:
    """Create the Task for `operation` and queue it; it runs only after every `depends_on` succeeded.
    `at_front` puts it at the head of its queue, before the jobs waiting there (a click someone waits for).

    Raises UnknownOperation for a name nobody registered, and QueueUnavailable (the Task is saved)
    when Redis does not answer.
    """
    op = get_operation(operation)
    queue_policy = policy(op.queue, get_settings())
    parent_ids = sorted({p if isinstance(p, int) else p.id for p in depends_on})
    params = dict(params or {})

    with get_engine().begin() as conn:
        parents = conn.execute(_LOCK_PARENTS, {"ids": parent_ids}).all() if parent_ids else []
        missing = set(parent_ids) - {p.id for p in parents}
        if missing:
            raise ValueError(f"depends_on names tasks that do not exist: {sorted(missing)}")
        now = utcnow()
        event_id, vm_id = subjects(target, params)
        values = dict(
            operation=operation, target=target, queue=op.queue, params=params, requested_by=requested_by,
            event_id=event_id, vm_id=vm_id,
            max_attempts=queue_policy.max_attempts, rq_job_id=uuid.uuid4().hex, status=TaskStatus.QUEUED,
            progress=0, attempts=0, created_at=now, updated_at=now, error=None, finished_at=None,
        )
        task_id = conn.execute(_INSERT_TASK, values).inserted_primary_key[0]
        if parent_ids:
            conn.execute(_INSERT_DEPENDENCY, [{"task_id": task_id, "depends_on_id": p} for p in parent_ids])
            parents = conn.execute(_PARENTS, {"ids": parent_ids}).all()
        failed = [p for p in parents if p.status in (TaskStatus.ERROR, TaskStatus.CANCELLED)]
        if failed:  # RQ would defer it forever behind a failed parent
            values.update(status=TaskStatus.CANCELLED, finished_at=now, error=(
                f"cancelled: task {failed[0].id} ({failed[0].operation}) it depends on did not succeed"))
            records.born_cancelled(conn, task_id, values["error"], now)
    task = Task(id=task_id, **values)  # detached: callers read it, nobody writes through it

    if task.status == TaskStatus.QUEUED:
        waiting_on = [p.rq_job_id for p in parents if p.status != TaskStatus.SUCCESS]
        try:
            enqueue_job(task, queue_policy, waiting_on, at_front=at_front)
        except ParentJobsMissing as exc:
            with job_context(queue=op.queue, job_id=task.rq_job_id, task_id=task.id):
                log.warning("task saved but not queued: %s; the reconciler queues it after them", exc)
        except RedisError as exc:
            with job_context(queue=op.queue, job_id=task.rq_job_id, task_id=task.id):
                log.warning("task saved but not queued (%s); the reconciler will queue it", type(exc).__name__)
            raise QueueUnavailable(task.id, exc) from exc
    return task


# "At most one active Task of this operation on this subject", the one de-duplication scheme:
# looked up by target (an event's run, a planned step), or by VM whatever the target (a click on a
# VM also finds the same action a deploy has in flight on it).
_ACTIVE_ON_TARGET = select(Task).where(Task.operation == bindparam("op"), Task.target == bindparam("subject"),
                                       Task.status.in_(TaskStatus.ACTIVE)).order_by(Task.id.desc()).limit(1)
_ACTIVE_ON_VM = select(Task).where(Task.operation == bindparam("op"), Task.vm_id == bindparam("subject"),
                                   Task.status.in_(TaskStatus.ACTIVE)).order_by(Task.id.desc()).limit(1)
REQUEST_LOCK_SECONDS = 30  # held only for a look-up, some checks and one enqueue


def active_task(operation: str, *, target: str | None = None, vm_id: int | None = None) -> Task | None:
    """The newest queued or running Task of `operation` on `target`, or on VM `vm_id`; None if none."""
    _subject(target, vm_id)
    statement, subject = (_ACTIVE_ON_VM, vm_id) if vm_id is not None else (_ACTIVE_ON_TARGET, target)
    with session_scope() as session:
        found = session.execute(statement, {"op": operation, "subject": subject}).scalar_one_or_none()
        if found is not None:
            session.expunge(found)
        return found


@contextmanager
def one_active(operation: str, *, target: str | None = None, vm_id: int | None = None,
               lock: bool = True) -> Iterator[Task | None]:
    """At most one active Task of `operation` on one subject (`target`, or VM `vm_id`): yields the
    one in flight, or None, while holding the subject's lock (`openvle:<target or vm:N>:request`),
    so the caller's own checks and its enqueue end before anyone else looks. Two requests at once
    find each other's Task instead of making two:

        with one_active("vm.start", vm_id=12) as running:
            if running is not None:
                return running
            ...  # the caller's checks (state, permissions), then enqueue_operation(...)

    `lock=False` (enqueue_once): the caller keeps others off the subject itself, for longer than one
    request: a planner holds its event's or VM's plan lock around all its steps
    (event_plans.one_planner, jobs/fresh_starts.plan), a periodic tick its time slot (periodic.py).
    The lock is Redis's (redis-py's Lock, released when the block ends or after
    REQUEST_LOCK_SECONDS); waiting for it longer than that is an error (LockError), not a duplicate."""
    if not lock:
        yield active_task(operation, target=target, vm_id=vm_id)
        return
    with get_redis().lock(f"openvle:{_subject(target, vm_id)}:request", timeout=REQUEST_LOCK_SECONDS,
                          blocking_timeout=REQUEST_LOCK_SECONDS):
        yield active_task(operation, target=target, vm_id=vm_id)


def _subject(target: str | None, vm_id: int | None) -> str:
    """What the Task acts on, as its lock is named: "event:4", "vm:12"."""
    if (target is None) == (vm_id is None):
        raise ValueError("one active Task on what? Give exactly one subject: a target, or a VM id")
    return targets.vm(vm_id) if vm_id is not None else target


def enqueue_once(operation: str, params: dict[str, Any] | None = None, *, target: str, requested_by: str | None = None,
                 depends_on: Sequence[Task | int] = (), at_front: bool = False) -> Task:
    """`enqueue_operation`, unless a Task of `operation` on `target` is still active: then that one.

    Planning uses it, so a retried or duplicated planner never queues a step twice. It takes no lock
    itself (`one_active(lock=False)`): planners hold their plan lock around all their steps (see
    event_plans.py), and a periodic tick holds its time slot (periodic.py)."""
    with one_active(operation, target=target, lock=False) as found:
        if found is not None:
            return found
        return enqueue_operation(operation, params, target=target, requested_by=requested_by, depends_on=depends_on,
                                 at_front=at_front)


def run_step(operation: str, params: dict[str, Any], *, target: str, run: str,
             depends_on: Sequence[Task | int] = ()) -> Task:
    """A step of one orchestrator run (`run`, its requested_by): the one that already succeeded, else
    `enqueue_once`. A run that plans again (a retried attempt) neither repeats finished steps nor
    duplicates queued ones; another run of the same operation starts its steps afresh."""
    with session_scope() as session:
        done = session.execute(select(Task).where(
            Task.operation == operation, Task.target == target, Task.requested_by == run,
            Task.status == TaskStatus.SUCCESS).limit(1)).scalar_one_or_none()
        if done is not None:
            session.expunge(done)
            return done
    return enqueue_once(operation, params, target=target, requested_by=run, depends_on=depends_on)


def subjects(target: str | None, params: dict[str, Any]) -> tuple[int | None, int | None]:
    """(event id, VM id) a Task concerns, from its params or its target ("event:4/…", "vm:12")."""
    event_id, vm_id = params.get("event_id"), params.get("vm_id")
    parsed = Target.parse(target)
    if not isinstance(event_id, int):
        event_id = parsed.event_id
    if not isinstance(vm_id, int):
        vm_id = parsed.vm_id
    return (event_id if isinstance(event_id, int) else None), (vm_id if isinstance(vm_id, int) else None)


class ParentJobsMissing(Exception):
    """Jobs the new job would wait on are gone from Redis: RQ would take them as done and run it now."""

    def __init__(self, job_ids: list[str]):
        super().__init__(f"{len(job_ids)} job(s) it waits on are gone from Redis")
        self.job_ids = job_ids


def missing_jobs(job_ids: Sequence[str]) -> list[str]:
    """Those of `job_ids` whose job hash is not in Redis."""
    if not job_ids:
        return []
    with get_redis().pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(Job.key_for(job_id))
        found = pipe.execute()
    return [job_id for job_id, there in zip(job_ids, found, strict=True) if not there]


def enqueue_job(task: Task, queue_policy: QueuePolicy, waiting_on: Sequence[str] = (), retries_left: int | None = None,
                first_attempt: int | None = None, at_front: bool = False):
    """Put the Task's job on its queue (also used by the reconciler to re-create a lost job, and by
    requeue to start a new series of attempts after `first_attempt - 1` used ones).

    Raises ParentJobsMissing (nothing enqueued) when a job it waits on is gone from Redis: RQ
    counts a missing dependency as met. The caller re-creates those first (reconcile.py)."""
    from openvle.tracking import execute, on_job_failure, on_job_stopped

    gone = missing_jobs(list(waiting_on))
    if gone:
        raise ParentJobsMissing(gone)

    retries = queue_policy.max_retries if retries_left is None else retries_left
    if first_attempt is None:
        first_attempt = queue_policy.max_attempts - retries
    retry = None
    if retries > 0:
        # Counted from the end by RQ, so pass exactly the waits still ahead.
        intervals = list(queue_policy.intervals[len(queue_policy.intervals) - retries:])
        retry = Retry(max=retries, interval=intervals, enqueue_at_front=True)
    queue = Queue(queue_policy.name, connection=get_redis())
    job = queue.enqueue(
        execute,
        task.id,
        task.operation,
        task.params,
        job_id=task.rq_job_id,
        description=f"{task.operation} (task {task.id}{', ' + task.target if task.target else ''})",
        retry=retry,
        job_timeout=queue_policy.timeout,
        result_ttl=queue_policy.result_ttl,
        failure_ttl=queue_policy.failure_ttl,
        # `at_front` holds for when its parents succeed too: RQ then puts it ahead of the queued work.
        depends_on=Dependency(jobs=list(waiting_on), enqueue_at_front=at_front) if waiting_on else None,
        on_failure=Callback(on_job_failure),
        on_stopped=Callback(on_job_stopped),
        meta={"task_id": task.id, "first_attempt": first_attempt},
        at_front=at_front,
    )
    with job_context(queue=queue_policy.name, job_id=job.id, task_id=task.id):
        log.info("queued %s%s", task.operation, f" after {len(waiting_on)} task(s)" if waiting_on else "")
    return job
