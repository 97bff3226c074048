"""The backend over real HTTP: health, a demo Task through a worker, clear errors."""

from __future__ import annotations

import datetime as dt
import re
import socket

import httpx
import pytest

from conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def api(start_role):
    port = free_port()
    backend = start_role("backend", BACKEND_PORT=str(port))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def up():
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 30, "the backend to answer", backend)
    yield client
    client.close()


def test_healthz_names_what_is_up(api):
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}


def test_healthz_is_503_naming_redis_when_it_is_down(start_role):
    port = free_port()
    backend = start_role("backend", BACKEND_PORT=str(port), REDIS_URL="redis://127.0.0.1:1/0")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def answer():
        try:
            return client.get("/healthz")
        except httpx.TransportError:
            return None

    response = wait_for(answer, 30, "the backend to answer", backend)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"] and body["checks"]["database"] == "ok"


def test_demo_task_runs_and_its_attempts_are_visible(api, start_role):
    start_role("worker")
    created = api.post("/api/tasks/demo", json={"queue": "mails", "duration": 0.2})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "queued" and task["queue"] == "mails" and task["max_attempts"] == 6

    def finished():
        body = api.get(f"/api/tasks/{task['id']}").json()
        return body if body["status"] == "success" else None

    done = wait_for(finished, 20, "the demo task")
    assert done["progress"] == 100
    assert [(s["attempt"], s["status"]) for s in done["subtasks"]] == [(1, "success")]
    assert done["subtasks"][0]["worker"].startswith("worker@")
    assert done["finished_at"].endswith("Z")
    assert done["logs"][0]["message"] == "done after 1 attempt(s)"
    listed = api.get("/api/tasks", params={"status": "success"}).json()
    assert [t["id"] for t in listed] == [task["id"]]


def test_queue_and_worker_monitoring(api, start_role):
    start_role("worker-vm-clone")
    queues = {q["name"]: q for q in api.get("/api/queues").json()}
    assert queues["pve_vm_clone"]["retry_intervals"] == [10, 30, 60, 60, 60]
    assert queues["pve_periodic"]["max_retries"] == 3
    assert queues["pve_vm_clone"]["workers"][0].startswith("worker-vm-clone@")
    workers = api.get("/api/workers").json()["workers"]
    assert [w["queues"] for w in workers] == [["pve_vm_clone"]]
    beat = workers[0]["last_heartbeat"]  # one valid timestamp in UTC, not "+00:00Z"
    assert beat.endswith("Z") and dt.datetime.fromisoformat(beat[:-1]).tzinfo is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("post", "/api/tasks/demo", {"queue": "nope"}, 422, "queue 'nope' does not exist; use one of pve_vm_clone"),
        ("post", "/api/tasks/demo", {"fail_times": -1}, 422, "fail_times: Input should be greater than or equal to 0"),
        ("post", "/api/tasks/demo", {"colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ("post", "/api/tasks/demo", {"depends_on": [999999]}, 422, "depends_on names tasks that do not exist"),
        ("get", "/api/tasks/999999", None, 404, "task 999999 does not exist"),
        ("get", "/api/tasks?status=done", None, 422, "status 'done' is not one of queued"),
        ("post", "/api/tasks/demo", b'{"queue": "mails",', 422,
         "the request body must be JSON (content-type: application/json); it broke at character 18"),
        ("post", "/api/tasks/demo", b'[1, 2]', 422, "the request body must be a JSON object"),
    ],
)
def test_bad_requests_get_a_clear_error(api, method, path, body, status, says):
    raw = body if isinstance(body, bytes) else None
    response = api.request(method.upper(), path, json=None if raw else body, content=raw,
                           headers={"content-type": "application/json"} if raw else None)
    assert response.status_code == status
    assert says in response.json()["error"]


def test_api_docs_load_nothing_from_outside(api):
    """/docs and /redoc work without internet: every script and style comes from the backend."""
    for page in ("/docs", "/redoc"):
        html = api.get(page).text
        assert "https://" not in html and "http://" not in html, page
        assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', html)
        assert any(a.endswith(".js") for a in assets), (page, assets)
        for asset in assets:
            fetched = api.get(asset)
            assert fetched.status_code == 200 and fetched.content, (page, asset)
    assert '"validatorUrl": null' in api.get("/docs").text
