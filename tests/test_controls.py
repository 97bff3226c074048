"""Operator controls over the API (admins): cancel, requeue and force-fail, one Task or many by filter,
each with a dry run. After each, RQ and the database agree: the reconciler finds nothing to repair."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from conftest import wait_for
from helpers import admin_client, load_task, settled, task_status
from openvle.connections import get_redis
from openvle.enqueue import enqueue_operation
from openvle.reconcile import reconcile


@pytest.fixture
def admin(clean):
    return admin_client()


def nothing_to_repair() -> None:
    report = reconcile(grace_seconds=0).as_dict()
    assert {k: v for k, v in report.items() if k not in ("checked", "woken_clones") and v} == {}, report


def job_status(task_id: int) -> JobStatus:
    return Job.fetch(load_task(task_id).rq_job_id, connection=get_redis()).get_status()


def test_cancel_by_filter_with_a_dry_run_first_takes_dependents_along(admin):
    first = enqueue_operation("demo.mails", {}, requested_by="user:someone")
    second = enqueue_operation("demo.mails", {}, depends_on=[first], requested_by="user:someone")
    third = enqueue_operation("demo.moodle", {}, depends_on=[second], requested_by="user:someone")
    other = enqueue_operation("demo.mails", {}, requested_by="scheduler")
    body = {"filter": {"requested_by": "user:someone", "queue": "mails"}, "dry_run": True}

    dry = admin.post("/api/tasks/actions/cancel", json=body).json()
    assert (dry["count"], dry["task_ids"], dry["done"]) == (2, [first.id, second.id], [])
    assert task_status(first.id) == "queued" and Queue("mails", connection=get_redis()).count == 2

    done = admin.post("/api/tasks/actions/cancel", json={**body, "dry_run": False}).json()
    assert done["task_ids"] == [first.id] and done["done"][0]["reason"] == "cancelled, with 2 dependent(s)"
    assert [(s["task_id"], s["reason"]) for s in done["skipped"]] == [
        (second.id, "it is cancelled: only a queued, scheduled or deferred Task can be cancelled")]
    assert load_task(first.id).error == "cancelled by user:ops"
    for dependent in (second, third):  # each says why: the Task at the root of its chain
        assert load_task(dependent.id).error == \
            f"cancelled: task {first.id} (demo.mails) it depends on was cancelled: cancelled by user:ops"
    assert [job_status(t.id) for t in (first, second, third)] == [JobStatus.CANCELED] * 3
    assert Queue("mails", connection=get_redis()).job_ids == [other.rq_job_id]
    nothing_to_repair()


def test_a_running_task_is_not_cancelled_nor_force_failed_while_its_worker_lives(admin, start_role):
    worker = start_role("worker", WORKER_JOB_MONITORING_INTERVAL="1")
    task = enqueue_operation("demo.mails", {"duration": 30})
    wait_for(lambda: task_status(task.id) == "processing", 20, "the task to run", worker)
    wait_for(lambda: job_status(task.id) == JobStatus.STARTED, 20, "RQ to say started", worker)

    cancel = admin.post(f"/api/tasks/{task.id}/cancel").json()
    assert cancel["count"] == 0 and cancel["skipped"][0]["reason"].startswith("it is running")
    fail = admin.post(f"/api/tasks/{task.id}/force-fail").json()
    assert fail["count"] == 0 and "is alive and running it" in fail["skipped"][0]["reason"]
    assert task_status(task.id) == "processing"


@pytest.mark.slow
def test_force_fail_closes_a_task_whose_worker_was_killed(admin, start_role, settings_env):
    settings_env(WORKER_JOB_MONITORING_INTERVAL="1")
    worker = start_role("worker", WORKER_JOB_MONITORING_INTERVAL="1")
    task = enqueue_operation("demo.mails", {"duration": 120})
    child = enqueue_operation("demo.mails", {}, depends_on=[task])
    wait_for(lambda: job_status(task.id) == JobStatus.STARTED, 30, "the task to run", worker)
    horses = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in [worker.proc.pid, *map(int, horses)]:
        os.kill(int(pid), signal.SIGKILL)  # the container is gone: worker and work horse
    worker.proc.wait()

    dry = wait_for(lambda: (lambda r: r if r["count"] == 1 else None)(
        admin.post(f"/api/tasks/{task.id}/force-fail?dry_run=true").json()), 30, "the worker to count as gone")
    assert dry["task_ids"] == [task.id] and task_status(task.id) == "processing"
    done = admin.post(f"/api/tasks/{task.id}/force-fail").json()
    assert done["done"][0]["reason"] == "failed, with 1 dependent(s) cancelled"

    failed = load_task(task.id)
    assert failed.status == "error" and failed.error.startswith("failed by user:ops: its worker worker@")
    assert failed.error.endswith("is gone") and [(s.attempt, s.status) for s in failed.subtasks] == [(1, "error")]
    assert task_status(child.id) == "cancelled"
    redis = get_redis()
    assert job_status(task.id) == JobStatus.FAILED
    assert failed.rq_job_id in FailedJobRegistry("mails", connection=redis).get_job_ids()
    assert StartedJobRegistry("mails", connection=redis).get_job_ids(cleanup=False) == []
    assert job_status(child.id) == JobStatus.CANCELED
    nothing_to_repair()


def test_requeue_starts_a_new_series_of_attempts_and_keeps_the_old_ones(admin, start_role, settings_env):
    settings_env(WORKER_MAX_RETRY="0")
    worker = start_role("worker", WORKER_MAX_RETRY="0")
    parent = enqueue_operation("demo.mails", {"fail_times": 1})
    child = enqueue_operation("demo.moodle", {}, depends_on=[parent])
    wait_for(lambda: settled(parent.id), 30, "the parent to fail", worker)
    assert task_status(parent.id) == "error" and task_status(child.id) == "cancelled"
    old_job = load_task(parent.id).rq_job_id

    refused = admin.post(f"/api/tasks/{child.id}/requeue").json()
    assert refused["skipped"][0]["reason"] == f"task {parent.id} it depends on did not succeed: requeue that one first"
    dry = admin.post("/api/tasks/actions/requeue", json={"filter": {"status": "error"}, "dry_run": True}).json()
    assert dry["task_ids"] == [parent.id]
    # Both by ids, oldest first: the parent is queued again before its child waits on it; the dry run
    # (what a confirmation shows) counts the child too, since its parent goes first.
    both = {"task_ids": [child.id, parent.id]}
    dry = admin.post("/api/tasks/actions/requeue", json={**both, "dry_run": True}).json()
    assert (dry["task_ids"], dry["skipped"]) == ([parent.id, child.id], [])
    assert task_status(parent.id) == "error"
    done = admin.post("/api/tasks/actions/requeue", json=both).json()
    assert done["task_ids"] == [parent.id, child.id], done

    finished = wait_for(lambda: settled(child.id), 30, "the chain to finish", worker)
    again = load_task(parent.id)
    assert (again.status, finished.status) == ("success", "success")
    assert [(s.attempt, s.status) for s in again.subtasks] == [(1, "error"), (2, "success")]
    assert again.max_attempts == 2 and again.rq_job_id != old_job
    assert [log.message for log in again.logs][0] == "requeued by user:ops after 1 attempt(s)"
    assert not Job.exists(old_job, connection=get_redis())  # not left in RQ's failed registry
    nothing_to_repair()


def test_controls_name_what_is_wrong(admin):
    task = enqueue_operation("demo.mails", {})
    assert admin.post(f"/api/tasks/{task.id}/requeue").json()["skipped"][0]["reason"] == \
        "it is queued: only a Task that failed for good or was cancelled can be requeued"
    assert admin.post(f"/api/tasks/{task.id}/force-fail").json()["skipped"][0]["reason"] == \
        "it is queued: only a Task stuck in processing can be force-failed"
    both = admin.post("/api/tasks/actions/cancel", json={"task_ids": [1], "filter": {"status": "queued"}})
    assert both.status_code == 422 and "either task_ids" in both.json()["error"]
    assert admin.post("/api/tasks/999999/cancel").status_code == 404
    assert admin.post(f"/api/tasks/{task.id}/explode").status_code == 422
