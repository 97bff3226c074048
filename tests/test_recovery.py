"""Nothing stays queued or processing forever: lost workers, lost jobs, lost writes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import update

from conftest import _flush, wait_for
from helpers import load_task, settled
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Task, utcnow
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
    _flush(clean)  # Redis restarted without persistence (the run keeps its claim on the db)

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


# --- issue 12 bug 5: the reconciler believes Redis's lists, not a job's word ------------------------------


def _queue_ids(queue: str) -> list[str]:
    from rq import Queue

    return Queue(queue, connection=get_redis()).get_job_ids()


def test_a_queued_job_missing_from_its_queue_is_put_back(clean):
    task = enqueue_operation("demo.mails", {})
    get_redis().lrem(f"rq:queue:{task.queue}", 0, task.rq_job_id)  # lost between two writes

    report = reconcile(grace_seconds=0)

    assert report.requeued == [task.id]
    assert _queue_ids(task.queue) == [task.rq_job_id]


def test_a_checking_back_job_missing_from_the_schedule_is_repaired(clean):
    from openvle.tracking import attempt_of

    task = enqueue_operation("demo.mails", {"wait_checks": 3})
    redis = get_redis()
    job = Job.fetch(task.rq_job_id, connection=redis)
    # Its attempt is open and it waits on purpose (CheckBack), but the schedule lost it.
    redis.lrem(f"rq:queue:{task.queue}", 0, task.rq_job_id)
    job.meta.update(continues_attempt=attempt_of(job), checks=1)
    job.save_meta()
    job.set_status(JobStatus.SCHEDULED)
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == task.id).values(status="processing", attempts=attempt_of(job)))

    report = reconcile(grace_seconds=0)

    assert report.requeued == [task.id]
    assert _queue_ids(task.queue) == [task.rq_job_id]


def test_a_child_is_never_queued_behind_a_parent_job_gone_from_redis(clean):
    from rq.registry import DeferredJobRegistry

    parent = enqueue_operation("demo.mails", {})
    child = enqueue_operation("demo.mails", {}, depends_on=[parent])
    _flush(clean)  # Redis lost everything: both jobs are gone (the run keeps its claim on the db)
    # The parent was touched a moment ago (the grace keeps the reconciler off it); the child not.
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == child.id).values(updated_at=utcnow() - _seconds(600)))

    reconcile(grace_seconds=300)

    redis = get_redis()
    assert Job.fetch(child.rq_job_id, connection=redis).get_status() == JobStatus.DEFERRED
    assert child.rq_job_id not in _queue_ids(child.queue)
    assert Job.fetch(parent.rq_job_id, connection=redis).get_status() == JobStatus.QUEUED
    assert child.rq_job_id in DeferredJobRegistry(child.queue, connection=redis).get_job_ids()

    # A step enqueued behind a parent whose job is gone waits for the reconciler, never runs first.
    redis.delete(Job.key_for(parent.rq_job_id))
    late = enqueue_operation("demo.mails", {}, depends_on=[parent])
    assert late.rq_job_id not in _queue_ids(late.queue)


def _seconds(n: int):
    import datetime as dt

    return dt.timedelta(seconds=n)


def test_waking_a_clone_waiter_never_loses_its_job_when_the_enqueue_fails(clean, monkeypatch):
    import datetime as dt

    from redis.exceptions import ConnectionError as RedisConnectionError
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    from openvle import pacing

    task = enqueue_operation("demo.pve_vm_clone", {})
    redis = get_redis()
    queue = Queue(task.queue, connection=redis)
    job = Job.fetch(task.rq_job_id, connection=redis)
    redis.lrem(queue.key, 0, job.id)
    queue.schedule_job(job, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=300))  # checking back later
    pacing.wait_for_slot(job.id, "pve1", 1, 1)

    def connection_dropped(*args, **kwargs):
        raise RedisConnectionError("connection lost")  # Redis went away mid-wake

    monkeypatch.setattr(Queue, "_enqueue_job", connection_dropped)
    monkeypatch.setattr(Queue, "enqueue_job", connection_dropped)
    with pytest.raises(RedisConnectionError):
        pacing.wake_next()
    monkeypatch.undo()

    scheduled = ScheduledJobRegistry(task.queue, connection=redis).get_job_ids()
    assert job.id in scheduled or job.id in _queue_ids(task.queue), "the job is in neither: lost"
    assert pacing.wake_next() == job.id
    assert _queue_ids(task.queue) == [job.id] and job.id not in ScheduledJobRegistry(
        task.queue, connection=redis).get_job_ids()


# --- issue 12 bug 7: closing a Task RQ finished closes its attempt too -----------------------------------


def test_a_task_rq_finished_is_closed_with_its_attempt(clean):
    from openvle import records
    from openvle.db.engine import get_engine

    task = enqueue_operation("demo.mails", {})
    with get_engine().begin() as conn:  # the worker opened attempt 1 ...
        records.begin_attempt(conn, task.id, "worker@gone")
    job = Job.fetch(task.rq_job_id, connection=get_redis())
    get_redis().lrem(f"rq:queue:{task.queue}", 0, job.id)
    job.set_status(JobStatus.FINISHED)  # ... RQ finished the job, and the success was never written

    report = reconcile(grace_seconds=0)

    assert report.succeeded == [task.id]
    done = load_task(task.id)
    assert done.status == "success" and done.finished_at is not None
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "success")]
    assert done.subtasks[0].finished_at is not None


def test_a_horse_whose_exit_rq_could_not_read_is_recorded_not_fatal(clean):
    # RQ calls the handler with ret_val None when waitpid returned nothing ("terminated unexpectedly");
    # an exception there made the whole worker quit (found by the fault suite's 100-participant run).
    from openvle import records
    from openvle.db.engine import get_engine
    from openvle.tracking import on_horse_killed

    task = enqueue_operation("demo.mails", {})
    with get_engine().begin() as conn:
        records.begin_attempt(conn, task.id, "worker@here")
    on_horse_killed(Job.fetch(task.rq_job_id, connection=get_redis()), None, None, None)

    attempt = load_task(task.id).subtasks[0]
    assert attempt.status == "error" and "its exit could not be read" in attempt.error


# --- issue 17: a dead worker is noticed by what really tells, in seconds -------------------------------------


def _entry_expiry(queue: str, job_id: str) -> float:
    """When RQ itself would take the job for abandoned: its started-registry entry's score."""
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue, connection=get_redis())
    entries = [e for e in get_redis().zrange(registry.key, 0, -1, withscores=True) if e[0].decode().startswith(job_id)]
    assert entries, f"job {job_id} is not in the started registry"
    return entries[0][1]


def test_a_killed_worker_is_noticed_by_its_replacement_long_before_its_heartbeat_lapses(start_role, clean, tmp_path):
    lives = {"WORKER_LIVES_DIR": str(tmp_path / "lives")}  # as one container's own files
    worker = start_role("worker", **lives)
    task = enqueue_operation("demo.moodle", {"duration": 60})
    job = Job.fetch(task.rq_job_id, connection=get_redis())
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 15, "the job to start", worker)
    horse = horse_of(worker.proc.pid)
    rq_would_notice_at = _entry_expiry(task.queue, task.rq_job_id)

    os.kill(horse, signal.SIGKILL)  # what `docker kill` does: everything at once, nothing written
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    killed_at = time.time()
    restarted = start_role("worker", **lives)  # compose starts it again

    lost = wait_for(lambda: (t := load_task(task.id)).subtasks[0].status == "error" and t, 60, "the lost attempt",
                    restarted)
    first = lost.subtasks[0]
    noticed = first.finished_at.timestamp() + _utc_offset()
    assert first.error.startswith("attempt lost: its worker worker@") and "is gone (pid" in first.error and \
        "no longer runs" in first.error, first.error
    # Its life note told the replacement at once (the pid namespace's number may come back, as podman's
    # containers showed, so a note from this namespace is judged by its pid too).
    assert "and are gone: worker@" in restarted.output
    # Told by its process, not by RQ's heartbeat expiry (job_monitoring_interval + 60 s after the last beat).
    assert noticed < rq_would_notice_at - 30, (noticed - killed_at, rq_would_notice_at - killed_at)
    print(f"lost attempt recorded {noticed - killed_at:.1f}s after the kill "
          f"(RQ's heartbeat expiry: {rq_would_notice_at - killed_at:.0f}s)")


# A container of its own, as far as pids go: the worker sees a new pid namespace (it is pid 1 there).
OWN_PID_NAMESPACE = ("unshare", "--pid", "--fork", "--mount-proc")


def test_a_worker_killed_with_its_container_is_noticed_as_soon_as_the_container_starts_again(start_role, clean,
                                                                                             tmp_path):
    """Under compose a killed worker's container starts again in a new pid namespace, where the old
    pid means nothing, and a heartbeat check would wait 3 beats. The life note the killed worker left
    in the container's own files tells the new worker at once. Heartbeats 300 s apart here: only
    the note can tell within the test's wait."""
    from rq.worker import Worker

    container = {"WORKER_LIVES_DIR": str(tmp_path / "lives"), "WORKER_JOB_MONITORING_INTERVAL": "300"}
    worker = start_role("worker", wait=False, prefix=OWN_PID_NAMESPACE, **container)
    task = enqueue_operation("demo.moodle", {"duration": 60})
    job = Job.fetch(task.rq_job_id, connection=get_redis())
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job to start", worker)
    killed = Job.fetch(task.rq_job_id, connection=get_redis()).worker_name
    assert killed.endswith(".1"), killed  # pid 1 of its own namespace: no pid of ours tells anything

    os.killpg(worker.proc.pid, signal.SIGKILL)  # the container dies with every process in it
    worker.proc.wait()
    assert Worker.find_by_key(Worker.redis_worker_namespace_prefix + killed, connection=get_redis()) is not None
    restarted = start_role("worker", **container)  # the same container started again: its files kept

    lost = wait_for(lambda: (t := load_task(task.id)).subtasks[0].status == "error" and t, 60, "the lost attempt",
                    restarted)
    assert lost.subtasks[0].error == f"attempt lost: its worker {killed} is gone (its container was started again)"
    assert f"and are gone: {killed}; their jobs are retried" in restarted.output
    assert [p.name for p in (tmp_path / "lives").iterdir()] == [f"{restarted_name(restarted)}.life"]


def restarted_name(role) -> str:
    from rq.worker import Worker

    return next(w.name for w in Worker.all(connection=get_redis()) if w.name.endswith(f".{role.proc.pid}"))


def test_a_late_heartbeat_from_elsewhere_means_dead_only_when_it_stays_late(clean):
    """A worker on another machine (or pid namespace) is judged by its heartbeat: 3 intervals late,
    and the same beat still there on a second look at least one interval later (a worker cut off from
    Redis beats again once Redis is back). Time is handed in, not waited for."""
    from rq.utils import utcformat

    from openvle.dead_workers import why_worker_dead

    redis = get_redis()
    beat = time.time()
    redis.hset("rq:worker:worker@elsewhere.7", mapping={
        "birth": utcformat(dt.datetime.fromtimestamp(beat - 100, dt.UTC)), "pid": "7", "hostname": "elsewhere",
        "pid_space": "another-machine/123", "last_heartbeat": utcformat(dt.datetime.fromtimestamp(beat, dt.UTC))})

    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 8) is None  # less than 3 beats late
    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 10) is None  # late: first look
    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 11) is None  # too soon after it
    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 13) == \
        "its worker worker@elsewhere.7 stopped sending heartbeats (13s without one)"

    # It beat again meanwhile (Redis was away, not the worker): the late look starts over.
    redis.hset("rq:worker:worker@elsewhere.7", "last_heartbeat",
               utcformat(dt.datetime.fromtimestamp(beat + 12, dt.UTC)))
    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 22) is None
    assert why_worker_dead(redis, "worker@elsewhere.7", 3, now=beat + 30) is not None
    gone = why_worker_dead(redis, "worker@never-there.1", 3)
    assert gone == "its worker worker@never-there.1 is no longer registered"


def test_a_live_worker_on_this_machine_is_never_taken_for_dead_however_late_its_heartbeat(clean):
    from rq.utils import utcformat

    from openvle.dead_workers import _process_started, pid_space, why_worker_dead

    redis = get_redis()
    born = dt.datetime.fromtimestamp(_process_started(os.getpid()) + 1, dt.UTC)  # this process is the worker
    redis.hset("rq:worker:worker@here.me", mapping={
        "birth": utcformat(born), "pid": str(os.getpid()), "hostname": "here", "pid_space": pid_space(),
        "last_heartbeat": utcformat(born)})
    an_hour_on = born.timestamp() + 3600  # Redis was away for an hour; the process still runs

    assert why_worker_dead(redis, "worker@here.me", 3, now=an_hour_on) is None
    assert why_worker_dead(redis, "worker@here.me", 3, now=an_hour_on + 60) is None  # nor on a second look


def test_a_replacement_worker_takes_over_the_killed_workers_scheduling_at_once(start_role, clean):
    """RQ keeps a queue's scheduler lock 61 s after its holder's last refresh: a kill -9 froze every
    check-back and retry on the queue for a minute. The replacement frees a dead holder's lock."""
    from rq.scheduler import RQScheduler

    redis = get_redis()
    lock = RQScheduler.get_locking_key("moodle")
    worker = start_role("worker")
    task = enqueue_operation("demo.moodle", {"wait_checks": 20})  # checks back every second, via the scheduler
    wait_for(lambda: load_task(task.id).progress >= 10, 30, "the task to check back twice", worker)
    old_holder = redis.get(lock)
    assert old_holder is not None
    from openvle.dead_workers import free_dead_scheduler_locks

    assert free_dead_scheduler_locks(redis, ["moodle"]) == [] and redis.get(lock) == old_holder  # alive: kept

    os.killpg(worker.proc.pid, signal.SIGKILL)  # `docker kill`: the worker, its scheduler, its horse
    worker.proc.wait()
    lock_would_lapse_at = time.time() + redis.pttl(lock) / 1000
    restarted = start_role("worker")

    done = wait_for(lambda: settled(task.id), 60, "the check-backs to go on", restarted)
    assert done.status == "success"
    assert time.time() < lock_would_lapse_at, "the check-backs waited for the dead scheduler's lock to lapse"
    new_holder = redis.get(lock)
    assert new_holder is not None and new_holder != old_holder
    # The lock's holder, by RQ's own record of it, is the replacement's scheduler process.
    assert RQScheduler.fetch(new_holder.decode(), redis).pid in children(restarted.proc.pid)
    assert "scheduler lock of moodle released: scheduler" in restarted.output
