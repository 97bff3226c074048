"""Task/SubTask bookkeeping around every job, so job functions hold only their own logic.

`execute` is the function RQ runs for every Task: it runs the attempt the worker's bookkeeper opened
(or opens it itself), calls the operation, and records the outcome (a success through the
bookkeeper). RQ decides retries; we only make sure RQ and the DB agree:
- a PermanentError sets the job's retries_left to 0 before RQ sees the exception (no retry);
- a final failure cancels the Task's dependents, in the DB and in RQ (RQ would leave them deferred);
- attempts that die without an exception (SIGKILL, OOM) are recorded by RQ's hooks below, and
  whatever slips past them by the reconciler (reconcile.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from rq import Retry, get_current_job
from rq.exceptions import AbandonedJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from openvle import records, stores
from openvle.connections import get_redis
from openvle.context import CheckBack, TaskContext
from openvle.db.deadlocks import retry_deadlocks
from openvle.db.engine import get_engine
from openvle.db.models import Task, TaskStatus
from openvle.errors import PermanentError
from openvle.failure_hooks import failed_for_good
from openvle.logs import job_context, mask
from openvle.operations import get_operation
from openvle.queues import policy
from openvle.settings import get_settings

log = logging.getLogger("openvle.tracking")


def describe(exc: BaseException) -> str:
    """The one-line error a user sees: exception type and message, secrets masked."""
    text = str(exc).strip() or "(no message)"
    if not isinstance(exc, PermanentError):
        text = f"{type(exc).__name__}: {text}"
    return mask(text, get_settings().secrets())[:4000]


# --- the job function -------------------------------------------------------------------------------

# Attempts the worker process opened before forking the horse that runs them: job id -> attempt
# number (SKIP when the Task is already over). The horse inherits this dict through fork().
_opened_by_worker: dict[str, int] = {}
SKIP = 0
MAX_CHECKS = 10**9  # a waiting job is bounded by its own deadline, not by a count


def execute(task_id: int, operation: str, params: dict[str, Any]) -> Any:
    """Run one attempt of a Task. RQ calls this; nothing else should."""
    job = get_current_job()
    queue = job.origin if job else get_operation(operation).queue
    max_attempts = policy(queue, get_settings()).max_attempts

    attempt = _opened_by_worker.get(job.id) if job else None
    worker_closes = attempt is not None  # the horse hands the success to the bookkeeper once RQ has it
    if attempt is None:  # run outside TrackingWorker, or its bookkeeper could not open it
        attempt = continuing_attempt(job) if job else None
    if attempt is None:
        with get_engine().begin() as conn:  # RQ set the job's worker_name as it took the job
            attempt = records.begin_attempt(conn, task_id, job.worker_name if job else None) or SKIP
    if attempt == SKIP:
        log.info("task %s is no longer active; attempt skipped", task_id)
        return None

    fields = dict(queue=queue, job_id=job.id if job else "-", task_id=task_id, attempt=f"{attempt}/{max_attempts}")
    with job_context(**fields):
        log.info("%s started", operation)
        started = time.monotonic()
        checks = int((job.meta or {}).get("checks", 0)) if continuing_attempt(job) == attempt else 0
        ctx = TaskContext(task_id=task_id, attempt=attempt, max_attempts=max_attempts, queue=queue, checks=checks)
        try:
            result = get_operation(operation).func(ctx, **params)
        except BaseException as exc:  # timeouts and shutdowns count as failed attempts too
            _fail_attempt(job, task_id, attempt, queue, exc, time.monotonic() - started)
            raise
        if isinstance(result, CheckBack):
            return _check_back(job, attempt, checks, result)
        if not worker_closes:
            with get_engine().begin() as conn:
                records.record_success(conn, task_id, attempt, result)
        log.info("%s succeeded in %.2fs", operation, time.monotonic() - started)
        return result


def _check_back(job: Job | None, attempt: int, checks: int, wait: CheckBack) -> Retry:
    """Have RQ call this attempt again later. RQ's returned-Retry path counts separately from
    failure retries, so waiting never uses up the Task's retries."""
    if job is None:
        raise RuntimeError("CheckBack needs an RQ job")
    job.meta.update(continues_attempt=attempt, checks=checks + 1)
    job.save_meta()
    seconds = max(1, round(wait.seconds))
    log.info("waiting: %s; checking again in %ss", wait.reason, seconds)
    return Retry(max=MAX_CHECKS, interval=seconds)


def continuing_attempt(job: Job | None) -> int | None:
    """The attempt a called-back job continues, if RQ is about to run that attempt again."""
    if job is None:
        return None
    continues = (job.meta or {}).get("continues_attempt")
    return int(continues) if continues is not None and int(continues) == attempt_of(job) else None


Opener = Callable[[str, str, int, int, str], "int | None"]
ASKED = -1  # in _opened_by_worker: the bookkeeper was asked to open it; its answer comes to the horse


def ask_to_open(job: Job, worker_name: str, ask: Callable[[str, str, int, int, str], bool]) -> None:
    """In the worker process, before forking: have the attempt opened by the worker's bookkeeper.

    A fresh horse pays for a new DB connection and for touching SQLAlchemy's memory after fork;
    the bookkeeper, which never forks, does not. The horse waits for the answer (`await_opening`).
    """
    task_id = task_id_of(job)
    if task_id is None:
        return
    continuing = continuing_attempt(job)
    if continuing is not None:  # called back (CheckBack): the attempt is already open
        _opened_by_worker[job.id] = continuing
    elif ask(job.id, job.origin, task_id, attempt_of(job), worker_name):
        _opened_by_worker[job.id] = ASKED  # else the horse opens it itself


def await_opening(job: Job, answer: Callable[[str], int | None]) -> None:
    """In the horse, before the job runs (and its timeout counts): the bookkeeper's answer."""
    if _opened_by_worker.get(job.id) != ASKED:
        return
    opened = answer(job.id)
    if opened is None:  # nobody could answer: `execute` opens it itself
        del _opened_by_worker[job.id]
    else:
        _opened_by_worker[job.id] = opened


def hand_over_success(job: Job, return_value: Any, record: Callable[[int, int, Any], bool]) -> None:
    """In the horse, once RQ has the job finished: the success goes to the bookkeeper to write (or is
    written here when the bookkeeper is gone). A CheckBack's attempt stays open."""
    attempt = _opened_by_worker.get(job.id)
    task_id = task_id_of(job)
    if not attempt or attempt == ASKED or task_id is None or isinstance(return_value, Retry):
        return
    result = records.jsonable(return_value)
    if not record(task_id, attempt, result):
        write_success(get_engine().begin, task_id, attempt, result)


def forget_attempt(job: Job) -> None:
    """In the worker, after the horse: its attempt is the horse's and the bookkeeper's business now."""
    _opened_by_worker.pop(job.id, None)


def opener_on(transaction: Callable[[], AbstractContextManager[Connection]]) -> Opener:
    """Open attempts on `transaction`'s connection; waits while the database is away."""

    def open_known(job_id: str, queue: str, task_id: int, attempt: int, worker_name: str) -> int | None:
        with job_context(queue=queue, job_id=job_id, task_id=task_id,
                         attempt=f"{attempt}/{policy(queue, get_settings()).max_attempts}"):
            try:  # with the database away, the job waits for it: no job can do anything without it
                return stores.call_with_database(_open, task_id, attempt, worker_name, transaction)
            except Exception:  # the horse will try again itself
                log.exception("could not open the attempt of task %s; its job opens it itself", task_id)
                return None

    return open_known


@retry_deadlocks("opening the attempt")
def _open(task_id: int, attempt: int, worker_name: str,
          transaction: Callable[[], AbstractContextManager[Connection]]) -> int:
    try:
        with transaction() as conn:
            opened = records.begin_known_attempt(conn, task_id, attempt, worker_name)
        return attempt if opened else SKIP
    except IntegrityError:  # requeued by hand: RQ's count no longer matches ours
        with transaction() as conn:
            return records.begin_attempt(conn, task_id, worker_name) or SKIP


def attempt_of(job: Job) -> int:
    """The attempt RQ is about to run: the job's first attempt number plus the retries it used."""
    planned = len(job.retry_intervals or [])
    return int((job.meta or {}).get("first_attempt", 1)) + planned - (job.retries_left or 0)


def write_success(transaction: Callable[[], AbstractContextManager[Connection]], task_id: int, attempt: int,
                  result: Any) -> None:
    """Record a success on `transaction`'s connection; waits while the database is away."""
    try:
        stores.call_with_database(_record_success, transaction, task_id, attempt, result)
    except Exception as exc:  # the reconciler closes it from RQ's record later
        _not_recorded("the success", task_id, exc)


def _not_recorded(what: str, task_id: int, exc: BaseException) -> None:
    if stores.database_down(exc):  # an outage is expected and said once by its own lines: no traceback
        log.warning("could not record %s of task %s: the database is away (%s); the reconciler records it from "
                    "RQ once it is back", what, task_id, type(exc.orig).__name__ if hasattr(exc, "orig") else
                    type(exc).__name__)
    else:
        log.exception("could not record %s of task %s", what, task_id)


@retry_deadlocks("recording the success")
def _record_success(transaction: Callable[[], AbstractContextManager[Connection]], task_id: int, attempt: int,
                    result: Any) -> None:
    with transaction() as conn:
        records.record_success(conn, task_id, attempt, result)


@retry_deadlocks("recording the failed attempt")
def _record_failure(task_id: int, attempt: int | None, message: str, final: bool, wait: int | None) -> list[str]:
    with get_engine().begin() as conn:
        return records.record_failure(conn, task_id, attempt, message, final, wait)


def _fail_attempt(job: Job | None, task_id: int, attempt: int, queue: str, exc: BaseException, took: float) -> None:
    message = describe(exc)
    permanent = isinstance(exc, PermanentError)
    if permanent and job is not None:
        job.retries_left = 0  # RQ reads this right after the exception to decide on a retry
    final = permanent or job is None or not job.retries_left
    wait = None if final else policy(queue, get_settings()).wait_after(attempt)
    try:
        cancelled = _record_failure(task_id, attempt, message, final, wait)
    except Exception as exc:  # the DB is down too: RQ still retries, the reconciler repairs the record
        _not_recorded("the failed attempt", task_id, exc)
        return
    if final:
        kind = "permanent error" if permanent else "no retries left"
        # A permanent error is an expected answer; anything else gets its traceback for debugging.
        log.error("failed for good after %.2fs (%s): %s", took, kind, message, exc_info=None if permanent else exc)
        cancel_jobs(cancelled)
        failed_for_good(task_id, len(cancelled))
    else:
        log.warning("failed after %.2fs: %s; next attempt in %ss", took, message, wait)
        log.debug("traceback of the failed attempt", exc_info=exc)


def allowed_attempts(queue: str, task_max_attempts: int | None) -> int:
    """Attempts a Task may use: its queue's policy, or more when an operator requeued it."""
    queue_max = policy(queue, get_settings()).max_attempts
    return max(task_max_attempts, queue_max) if task_max_attempts else queue_max


def task_log_context(queue: str, job_id: str, task_id: int, attempts: int, max_attempts: int | None):
    """The log fields of one Task, for lines written about it from elsewhere (the reconcile job, a
    worker's hook): its own job and attempt count, never those of the job that writes the line."""
    return job_context(queue=queue, job_id=job_id, task_id=task_id,
                       attempt=f"{attempts}/{allowed_attempts(queue, max_attempts)}")


def record_lost_attempt(task_id: int, reason: str, final: bool, queue: str) -> None:
    """An attempt ended without our code seeing it (worker killed, horse died, job abandoned)."""
    with get_engine().begin() as conn:
        row = conn.execute(select(Task.status, Task.attempts, Task.max_attempts, Task.rq_job_id)
                           .where(Task.id == task_id)).first()
        if row is None or row.status in TaskStatus.FINAL:
            return
        wait = None if final else policy(queue, get_settings()).wait_after(max(row.attempts, 1))
        cancelled = records.record_failure(conn, task_id, None, reason, final, wait)
    with task_log_context(queue, row.rq_job_id, task_id, row.attempts, row.max_attempts):
        log.error("%s (%s)", reason, "failed for good" if final else f"next attempt in {wait}s")
    cancel_jobs(cancelled)
    if final:
        failed_for_good(task_id, len(cancelled))


# --- RQ hooks: attempts that end without an exception in `execute` ------------------------------------


def task_id_of(job: Job) -> int | None:
    task_id = (job.meta or {}).get("task_id")
    return int(task_id) if task_id is not None else None


def on_job_failure(job: Job, connection, exc_type, exc_value, traceback) -> None:
    """RQ's on_failure callback. Failures raised in `execute` are recorded there already; this
    handles the job RQ's StartedJobRegistry cleanup finds abandoned (its worker died)."""
    if exc_type is None or not issubclass(exc_type, AbandonedJobError):
        return
    task_id = task_id_of(job)
    if task_id is not None:
        because = (job.meta or {}).get("lost_because")  # said by dead_workers, which found it
        record_lost_attempt(
            task_id,
            f"attempt lost: {because}" if because else
            "attempt lost: its worker stopped sending heartbeats (killed, OOM or host lost)",
            final=not job.retries_left,
            queue=job.origin,
        )


def on_job_stopped(job: Job, connection) -> None:
    """RQ's on_stopped callback (`rq` stop-job command): the Task is cancelled, not retried."""
    task_id = task_id_of(job)
    if task_id is None:
        return
    with get_engine().begin() as conn:
        cancelled = records.record_cancelled(conn, task_id, "stopped by an operator")
    cancel_jobs(cancelled[1:])  # its own job is already stopped


def on_horse_killed(job: Job, retpid: int, ret_val: int, rusage) -> None:
    """The worker's work_horse_killed_handler: the job's process died (signal, OOM kill)."""
    task_id = task_id_of(job)
    if task_id is None:
        return
    if ret_val is None:  # RQ could not wait for it (it was gone already): a handler that raises here kills the worker
        detail = "its exit could not be read"
    else:
        detail = f"signal {os.WTERMSIG(ret_val)}" if os.WIFSIGNALED(ret_val) else f"exit status {ret_val}"
    record_lost_attempt(
        task_id,
        f"attempt lost: the job's process died unexpectedly ({detail})",
        final=not job.retries_left,
        queue=job.origin,
    )


# --- dependents ---------------------------------------------------------------------------------------


def cancel_jobs(job_ids: list[str]) -> None:
    """Cancel deferred RQ jobs so they leave the deferred registry instead of waiting forever."""
    if not job_ids:
        return
    redis = get_redis()
    for job_id in job_ids:
        try:
            Job.fetch(job_id, connection=redis).cancel()
        except (NoSuchJobError, InvalidJobOperation):
            pass
    log.warning("cancelled %d job(s) in RQ", len(job_ids))
