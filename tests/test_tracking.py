"""Task/SubTask tracking through real worker processes, real Redis and the real DB."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

from conftest import wait_for
from helpers import load_task, settled
from openvle.connections import get_redis
from openvle.enqueue import enqueue_operation
from openvle.settings import get_settings


def gap(earlier, later) -> float:
    return (later - earlier).total_seconds()


def test_fails_twice_then_succeeds_with_the_queue_intervals(start_role, clean):
    # pve_vm_actions waits 5 s after the first failure and 10 s after the second.
    worker = start_role("worker")
    task = enqueue_operation("demo.pve_vm_actions", {"fail_times": 2, "duration": 0.2})

    done = wait_for(lambda: settled(task.id), 40, "the task to settle", worker)

    assert done.status == "success", done.error
    assert done.error is None  # the failed attempts keep their errors; the Task did not fail
    assert done.progress == 100
    assert done.result == {"attempt": 3, "slept": 0.2, "checks": 0}
    attempts = done.subtasks
    assert [(s.attempt, s.status) for s in attempts] == [(1, "error"), (2, "error"), (3, "success")]
    assert attempts[0].error == "RuntimeError: demo: planned failure 1 of 2"
    assert attempts[1].error == "RuntimeError: demo: planned failure 2 of 2"
    assert all(s.worker and s.worker.startswith("worker@") for s in attempts)
    # Never earlier than the queue's waits (RQ keeps due times in whole seconds: -1 s), in this
    # order, and not the next interval up; the upper bounds leave room for a busy machine.
    assert 4 <= gap(attempts[0].finished_at, attempts[1].started_at) < 9
    assert 9 <= gap(attempts[1].finished_at, attempts[2].started_at) < 14
    assert [line.message for line in done.logs] == ["done after 3 attempt(s)"]


def test_permanent_error_fails_at_once_and_nothing_is_scheduled(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.mails", {"permanent": True})

    done = wait_for(lambda: settled(task.id), 20, "the task to settle", worker)

    assert done.status == "error"
    assert done.error == "demo: asked to fail permanently"
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "error")]
    queue = Queue("mails", connection=clean.redis)
    assert queue.scheduled_job_registry.count == 0
    assert Job.fetch(task.rq_job_id, connection=clean.redis).get_status() == JobStatus.FAILED


def test_retries_exhausted_fail_the_task_and_cancel_its_dependents(start_role, settings_env):
    settings_env(WORKER_MAX_RETRY="1")
    parent = enqueue_operation("demo.pve_vm_actions", {"fail_times": 10})
    child = enqueue_operation("demo.mails", {}, depends_on=[parent])
    grandchild = enqueue_operation("demo.moodle", {}, depends_on=[child])
    worker = start_role("worker", WORKER_MAX_RETRY="1")  # the chain exists before anything runs

    done = wait_for(lambda: settled(parent.id), 30, "the parent to settle", worker)

    assert done.status == "error"
    assert done.max_attempts == 2 and done.attempts == 2
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "error"), (2, "error")]
    assert done.error == "RuntimeError: demo: planned failure 2 of 10"
    for dependent in (child, grandchild):
        cancelled = load_task(dependent.id)
        assert cancelled.status == "cancelled"
        assert f"task {parent.id} (demo.pve_vm_actions) it depends on failed" in cancelled.error
        assert cancelled.subtasks == []
        # RQ's side is cancelled just after the DB's commit: wait for it rather than race it.
        wait_for(lambda job_id=dependent.rq_job_id: Job.fetch(job_id, connection=get_redis()).get_status()
                 == JobStatus.CANCELED, 30, "the dependent's RQ job to be cancelled", worker)


def test_dependent_runs_only_after_its_parent_succeeded(start_role, clean):
    worker = start_role("worker")
    parent = enqueue_operation("demo.mails", {"duration": 1.0})
    child = enqueue_operation("demo.core_periodic", {}, depends_on=[parent])

    done = wait_for(lambda: settled(child.id), 20, "the child to settle", worker)

    parent_done = load_task(parent.id)
    assert done.status == "success" and parent_done.status == "success"
    assert done.subtasks[0].started_at >= parent_done.finished_at


def test_dependent_of_an_already_failed_task_is_cancelled_at_once(start_role, clean):
    worker = start_role("worker")
    parent = enqueue_operation("demo.mails", {"permanent": True})
    wait_for(lambda: settled(parent.id), 20, "the parent to fail", worker)

    child = enqueue_operation("demo.mails", {}, depends_on=[parent])

    assert child.status == "cancelled"
    assert "did not succeed" in child.error
    assert not Job.exists(child.rq_job_id, connection=clean.redis)


def test_progress_and_log_lines_are_kept_with_the_task(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.guacamole", {"duration": 0.4})

    done = wait_for(lambda: settled(task.id), 20, "the task to settle", worker)

    assert done.status == "success"
    assert done.message == "step 4 of 4"
    assert done.logs[0].attempt == 1 and done.logs[0].level == "info"
    assert f"task={task.id} attempt=1/6" in worker.output
    assert f"queue=guacamole job={task.rq_job_id}" in worker.output


def test_a_waiting_job_keeps_its_attempt_and_frees_the_worker(start_role, clean):
    worker = start_role("worker-vm-clone")  # one worker, one queue: nothing else can run it
    waiting = enqueue_operation("demo.pve_vm_clone", {"wait_checks": 3})
    quick = enqueue_operation("demo.pve_vm_clone", {})

    done = wait_for(lambda: settled(waiting.id), 30, "the waiting task", worker)

    assert done.status == "success" and done.result["checks"] == 3
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "success")]  # waits are not attempts
    other = load_task(quick.id)
    assert other.status == "success" and other.finished_at < done.finished_at
    assert done.attempts == 1


class _DependentAddedMeanwhile(Queue):
    """A queue whose success path meets what fan-in makes routine: another process enqueues a
    dependent of the finishing job between RQ's WATCH and its EXEC, so RQ retries its pipeline."""

    raced = False

    def move_dependents_to_ready(self, job, *args, **kwargs):  # RQ 3's success path (2.12: enqueue_dependents)
        result = super().move_dependents_to_ready(job, *args, **kwargs)
        if not _DependentAddedMeanwhile.raced:
            _DependentAddedMeanwhile.raced = True
            Redis.from_url(get_settings().REDIS_URL).sadd(job.dependents_key, "a-dependent-added-meanwhile")
        return result


def test_a_job_whose_success_pipeline_is_retried_leaves_no_abandoned_leftover(clean):
    """rq#2424 (RQ 2.12): the retried success pipeline left the finished job in the
    StartedJobRegistry, and RQ's cleanup later took it for abandoned and ran it a second time.
    RQ 3 passes the execution to each try (rq#2466), so the worker needs no shim any more."""
    from openvle.worker import build_worker

    queue = _DependentAddedMeanwhile("core_periodic", connection=get_redis())
    job = queue.enqueue("builtins.len", "abc")
    assert queue.pop_job_id() == job.id
    build_worker("worker", get_settings()).execute_job(job, queue)  # forks a horse, as in production

    job = Job.fetch(job.id, connection=get_redis())
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 3
    assert queue.started_job_registry.get_job_and_execution_ids() == []  # nothing left to take for abandoned
    assert [r.execution_id is not None for r in job.results()] == [True]
    queue.started_job_registry.cleanup(timestamp=time.time() + 10**6)  # RQ's cleanup, as far ahead as it gets
    assert Job.fetch(job.id, connection=get_redis()).get_status() == JobStatus.FINISHED
    assert len(job.results()) == 1  # it did not run again


def test_a_deadlock_opening_an_attempt_is_tried_again_with_one_warning_and_no_traceback(clean, caplog):
    """A real InnoDB deadlock: another transaction holds the Task's row and waits for a row our
    transaction holds; InnoDB rolls ours back (the lighter one) with 1213."""
    import logging
    import threading
    from contextlib import contextmanager

    import pytest
    from sqlalchemy import update

    from openvle import tracking
    from openvle.db.engine import get_engine
    from openvle.db.models import Task

    if not clean.database_url.startswith("mysql"):
        pytest.skip("a deadlock needs MariaDB (InnoDB)")
    task = enqueue_operation("demo.mails", {})
    job = Job.fetch(task.rq_job_id, connection=get_redis())
    engine = get_engine()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS deadlock_probe")
        conn.exec_driver_sql("CREATE TABLE deadlock_probe (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
        conn.exec_driver_sql("INSERT INTO deadlock_probe VALUES " + ",".join(f"({i}, 0)" for i in range(1, 101)))
    other_holds_the_task, we_hold_the_probe = threading.Event(), threading.Event()

    def other_transaction():
        with engine.begin() as conn:
            conn.execute(update(Task).where(Task.id == task.id).values(message="busy elsewhere"))
            conn.exec_driver_sql("UPDATE deadlock_probe SET n = n + 1 WHERE id > 1")  # heavier: not the victim
            other_holds_the_task.set()
            we_hold_the_probe.wait(60)
            conn.exec_driver_sql("UPDATE deadlock_probe SET n = n + 1 WHERE id = 1")  # closes the cycle

    other = threading.Thread(target=other_transaction)
    other.start()
    assert other_holds_the_task.wait(60)
    tries = []

    @contextmanager
    def transaction():
        tries.append(1)
        with engine.connect() as conn, conn.begin():
            if len(tries) == 1:
                conn.exec_driver_sql("UPDATE deadlock_probe SET n = n + 1 WHERE id = 1")
                we_hold_the_probe.set()
            yield conn

    caplog.set_level(logging.INFO)
    try:
        opened = tracking.opener_on(transaction)(job.id, job.origin, task.id, tracking.attempt_of(job), "worker@test")
    finally:
        we_hold_the_probe.set()
        other.join(60)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE deadlock_probe")

    assert len(tries) == 2
    assert opened == 1
    assert [(s.attempt, s.status) for s in load_task(task.id).subtasks] == [(1, "processing")]
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].levelname == "WARNING" and said[0].exc_info is None
    assert "deadlock (1213)" in said[0].getMessage() and "trying again" in said[0].getMessage()
