"""The backend over real HTTP: health, a demo Task through a worker, clear errors, and the front door
itself: a browser's login with its cookie and CSRF token, a script's Bearer token."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest

from conftest import wait_for
from helpers import account, bearer, free_port


@pytest.fixture
def backend_url(start_role):
    port = free_port()
    backend = start_role("backend", BACKEND_PORT=str(port), DEV_MODE="true")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def up():
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 30, "the backend to answer", backend)
    client.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def api(backend_url):
    """A client with an admin's token, as a script would use the API."""
    _, token = account("ops-admin", "admin")
    client = httpx.Client(base_url=backend_url, timeout=10, headers=bearer(token))
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
    assert [t["id"] for t in listed["items"]] == [task["id"]]
    assert done["requested_by"] == "user:ops-admin"


def test_queue_and_worker_monitoring(api, start_role):
    start_role("worker-vm-clone")
    queues = {q["name"]: q for q in api.get("/api/queues").json()}
    assert queues["pve_vm_clone"]["retry_intervals"] == [10, 30, 60, 60, 60]
    assert queues["pve_periodic"]["max_retries"] == 3
    assert queues["pve_vm_clone"]["workers"][0].startswith("worker-vm-clone@")
    workers = api.get("/api/workers").json()
    assert [(w["role"], w["queues"]) for w in workers] == [("worker-vm-clone", ["pve_vm_clone"])]
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
        ("get", "/api/tasks?status=done", None, 422, "status: Input should be 'queued', 'processing'"),
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


def test_a_browser_logs_in_with_a_cookie_and_changes_things_only_with_its_csrf_token(backend_url):
    account("dev-teach", "teacher", password="correct horse battery")
    browser = httpx.Client(base_url=backend_url, timeout=10)
    assert browser.get("/api/events").status_code == 401

    wrong = browser.post("/api/auth/login", json={"username": "dev-teach", "password": "nope nope nope"})
    unknown = browser.post("/api/auth/login", json={"username": "nobody", "password": "nope nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "wrong user name or password"}

    login = browser.post("/api/auth/login", json={"username": "dev-teach", "password": "correct horse battery"})
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"]
    assert "openvle_session=ovs_" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here; behind the TLS proxy it is set (SESSION_COOKIE_SECURE=auto)
    csrf = login.json()["csrf_token"]
    assert login.json()["user"]["username"] == "dev-teach"
    assert "correct horse" not in login.text and "argon2" not in login.text

    assert browser.get("/api/events").json() == []
    made = {"name": "a", "template": 1, "start": "2030-01-01T09:00:00Z", "end": "2030-01-01T10:00:00Z"}
    refused = browser.post("/api/events", json=made)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]
    forged = browser.post("/api/events", json=made, headers={"X-CSRF-Token": "0" * 64})
    assert forged.status_code == 403
    checked = browser.post("/api/events", json=made, headers={"X-CSRF-Token": csrf})
    assert checked.status_code == 422 and "template: no template 1" in checked.json()["error"]

    assert browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    browser.cookies.clear()
    browser.cookies.set("openvle_session", cookie.split(";")[0].split("=", 1)[1])
    assert browser.get("/api/events").status_code == 401  # the session is gone on the server, not just the cookie


def test_a_script_swaps_a_password_for_a_token_and_the_token_stops_when_revoked(backend_url):
    account("scripter", "student", password="a long enough one")
    client = httpx.Client(base_url=backend_url, timeout=10)
    made = client.post("/api/auth/tokens", json={"username": "scripter", "password": "a long enough one",
                                                  "name": "nightly", "days": 7})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token.startswith("ovt_") and made.json()["prefix"] == token[:10]
    me = client.get("/api/me", headers=bearer(token))
    assert me.json()["username"] == "scripter"
    listed = client.get("/api/me/tokens", headers=bearer(token)).json()
    assert [t["name"] for t in listed] == ["nightly", "tests"]  # newest first
    assert token not in str(listed)
    assert client.delete(f"/api/me/tokens/{made.json()['id']}", headers=bearer(token)).status_code == 200
    gone = client.get("/api/me", headers=bearer(token))
    assert gone.status_code == 401 and gone.headers["www-authenticate"] == "Bearer"


def test_no_password_or_token_reaches_the_backend_log(start_role):
    port = free_port()
    backend = start_role("backend", BACKEND_PORT=str(port))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    wait_for(lambda: _answers(client), 30, "the backend to answer", backend)
    _, token = account("logged", password="pa55word-in-a-log?")
    link = "ovl_a-one-time-link-token-0123"
    assert client.get("/set-password", params={"token": link}).status_code == 200
    assert client.post("/api/auth/password", json={"token": link, "password": "x" * 12}).status_code == 422
    assert client.post("/api/auth/login", json={"username": "logged", "password": "pa55word-in-a-log?"}).status_code \
        == 200
    client.cookies.clear()
    assert client.get("/api/me", headers=bearer(token)).status_code == 200
    assert client.get("/api/me", params={"token": token}).status_code == 401  # a token in a URL counts for nothing
    backend.stop()
    output = backend.output
    assert "GET /set-password?token=******** HTTP/1.1" in output
    for secret in (link, token, "pa55word-in-a-log?"):
        assert secret not in output


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
