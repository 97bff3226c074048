"""What operators watch: the monitoring endpoints (admins) and /metrics (Prometheus, METRICS_TOKEN),
both counted from Redis and the database at the moment they are asked."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from conftest import wait_for
from helpers import account, bearer, settled, task_status
from openvle import pacing
from openvle.db.engine import session_scope
from openvle.db.models import Event, Node, SubTask, utcnow
from openvle.enqueue import enqueue_operation
from openvle.lab_events import create_event, create_template

METRICS_TOKEN = "metrics-token-0123456789"


@pytest.fixture
def client(clean, settings_env):
    settings_env(METRICS_TOKEN=METRICS_TOKEN)
    from openvle.backend.app import create_app

    return TestClient(create_app())


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_metrics_are_off_without_a_token_and_refuse_a_wrong_one(clean):
    from openvle.backend.app import create_app

    off = TestClient(create_app()).get("/metrics")
    assert off.status_code == 404 and "set METRICS_TOKEN" in off.json()["error"]


def test_metrics_count_queues_tasks_attempts_workers_events_and_clone_slots(client, start_role):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("wrong")).status_code == 401
    worker = start_role("worker")
    done = enqueue_operation("demo.mails", {"duration": 0.2})
    wait_for(lambda: settled(done.id), 30, "a task to finish", worker)
    worker.stop()
    waiting = enqueue_operation("demo.moodle", {})
    template = create_template("tpl", pve_vmid=9001, node="pve1")
    start = utcnow() + dt.timedelta(days=5)
    create_event("Lab", template, start, start + dt.timedelta(hours=1))
    with session_scope() as session:  # the attempt took exactly 3 s
        session.add(Node(name="pve1", status="online"))
        attempt = session.execute(select(SubTask).where(SubTask.task_id == done.id)).scalar_one()
        attempt.finished_at = attempt.started_at + dt.timedelta(seconds=3)
    assert pacing.acquire("pve1", template, 77, limit=2)
    start_role("worker-vm-clone")

    seen = scrape(client)
    assert seen[("openvle_queue_jobs", (("queue", "moodle"), ("registry", "queued")))] == 1
    assert seen[("openvle_tasks_finished", (("operation", "demo.mails"), ("status", "success")))] == 1
    assert seen[("openvle_tasks_active", (("queue", "moodle"), ("status", "queued")))] == 1
    assert seen[("openvle_attempt_duration_seconds_bucket", (("le", "2.0"), ("queue", "mails")))] == 0
    assert seen[("openvle_attempt_duration_seconds_bucket", (("le", "5.0"), ("queue", "mails")))] == 1
    assert seen[("openvle_attempt_duration_seconds_count", (("queue", "mails"),))] == 1
    assert seen[("openvle_attempt_duration_seconds_sum", (("queue", "mails"),))] == pytest.approx(3.0, abs=0.01)
    assert seen[("openvle_workers", (("role", "worker-vm-clone"),))] == 1
    assert seen[("openvle_events", (("state", "scheduled"),))] == 1
    assert seen[("openvle_events", (("state", "archived"),))] == 0
    assert seen[("openvle_clone_slots_in_use", (("node", "pve1"),))] == 1
    assert seen[("openvle_store_up", (("store", "redis"),))] == 1 and seen[("openvle_database_up", ())] == 1
    assert task_status(waiting.id) == "queued"


def test_monitoring_shows_queues_workers_scheduler_and_nodes(client, start_role):
    _, token = account("ops", "admin")
    waiting = enqueue_operation("demo.moodle", {})
    with session_scope() as session:
        session.add(Node(name="pve1", status="online", maxcpu=8, synced_at=utcnow()))
        session.execute(update(Event).values(status="draft"))
    start_role("scheduler")
    worker = start_role("worker-vm-clone")
    running = enqueue_operation("demo.pve_vm_clone", {"duration": 20})
    wait_for(lambda: task_status(running.id) == "processing", 30, "the clone-queue demo to run", worker)

    queues = {q["name"]: q for q in client.get("/api/queues", headers=bearer(token)).json()}
    assert queues["moodle"]["queued"] == 1 and queues["moodle"]["oldest_waiting_seconds"] >= 0
    assert queues["pve_vm_clone"]["started"] == 1 and queues["mails"]["oldest_waiting_seconds"] is None
    workers = client.get("/api/workers", headers=bearer(token)).json()
    clone = next(w for w in workers if w["role"] == "worker-vm-clone")
    assert clone["current_task"] == running.id and clone["last_heartbeat"].endswith("Z")

    def scheduler_up():
        shown = client.get("/api/scheduler", headers=bearer(token)).json()["schedulers"]
        return shown if shown and shown[0]["jobs"] else None

    schedulers = wait_for(scheduler_up, 30, "the scheduler to register")
    jobs = {j["name"]: j for j in schedulers[0]["jobs"]}
    assert jobs["purge-audit"]["schedule"] == "45 3 * * *" and jobs["purge-audit"]["next_run"].endswith("Z")
    assert jobs["heartbeat"]["schedule"].startswith("every ")
    nodes = client.get("/api/nodes", headers=bearer(token)).json()
    assert [(n["name"], n["maxcpu"], n["clone_slots_in_use"]) for n in nodes] == [("pve1", 8, 0)]
    history = client.get("/api/nodes/pve1/history", headers=bearer(token))
    assert history.status_code == 404 and "set MONGO_URL" in history.json()["error"]
    assert task_status(waiting.id) == "queued"
