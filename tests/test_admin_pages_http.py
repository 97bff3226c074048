"""The admin pages over HTTP (no browser; the Chromium tests are tests/pages/test_admin_pages.py): what
a confirmation names, bad filters said beside their field, 404 for roles the pages do not reach."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from conftest import wait_for
from helpers import load_task
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskStatus
from openvle.enqueue import enqueue_operation
from test_pages_http import log_in


@pytest.fixture
def client(clean):
    from openvle.backend.app import create_app

    return TestClient(create_app())


def failed(task_id: int, why: str = "boom") -> None:
    """As a Task that ran out of retries is (the controls read only the row and its RQ job)."""
    with session_scope() as session:
        task = session.get(Task, task_id)
        task.status, task.error = TaskStatus.ERROR, why


def text_of(html: str) -> str:
    return re.sub(r"\s+([:,.?])", r"\1", re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_a_confirmation_names_how_many_and_which_and_changes_nothing(client):
    csrf = log_in(client, "ada", "admin")
    broken = enqueue_operation("demo.mails", {}, target="demo:broken", requested_by="user:ada")
    waiting = enqueue_operation("demo.mails", {}, target="demo:waiting", requested_by="user:ada")
    failed(broken.id)

    page = client.post("/tasks/confirm", data={"csrf_token": csrf, "action": "requeue", "back": "/tasks?status=error",
                                               "ids": [str(broken.id), str(waiting.id)]})
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Requeue 1 Task?" in shown and f"#{broken.id} demo.mails demo:broken" in shown
    assert (f"1 of the selected will be left alone: #{waiting.id}: it is queued: only a Task that failed for good "
            "or was cancelled can be requeued") in shown
    assert f'name="ids" value="{broken.id}"' in page.text and f'name="ids" value="{waiting.id}"' not in page.text
    assert 'href="/tasks?status=error"' in page.text  # back to the list as it was filtered
    assert load_task(broken.id).status == "error"  # a confirmation is a dry run

    nothing = client.post("/tasks/confirm", data={"csrf_token": csrf, "action": "cancel", "back": "https://evil.example"})
    assert nothing.status_code == 422 and "No Task is selected" in nothing.text
    assert 'href="/tasks"' in nothing.text and "evil.example" not in nothing.text

    done = client.post("/tasks/act", data={"csrf_token": csrf, "action": "cancel", "ids": str(waiting.id)})
    assert done.status_code == 200 and "Cancelled 1 Task" in done.text
    assert load_task(waiting.id).status == "cancelled" and load_task(waiting.id).error == "cancelled by user:ada"
    without = client.post("/tasks/act", data={"action": "cancel", "ids": str(broken.id)})
    assert without.status_code == 403  # no CSRF token, nothing done
    assert load_task(broken.id).status == "error"


def test_bad_filters_are_said_beside_their_field_and_kept(client):
    log_in(client, "ada", "admin")
    page = client.get("/tasks", params={"event_id": "seven", "requested_by": "user:bob",
                                        "created_after": "yesterday"})
    assert page.status_code == 422
    assert re.search(r'id="f-event_id-error"[^>]*>Should be a valid integer', page.text)
    assert re.search(r'id="f-created_after-error"[^>]*>[^<]*datetime', page.text)
    assert 'name="requested_by" type="text" value="user:bob"' in page.text
    assert client.get("/tasks/rows", params={"ids": "1,x"}).status_code == 422
    assert "Hours: choose 1, 6, 24, 168, not 5" in client.get("/nodes", params={"hours": "5"}).text
    audit = client.get("/audit", params={"outcome": "99"})
    assert audit.status_code == 422 and 'id="f-outcome-error"' in audit.text


def test_roles_the_admin_pages_do_not_reach_get_not_found(client):
    csrf = log_in(client, "tom", "teacher")
    for path in ("/queues", "/nodes", "/templates", "/users", "/audit", "/users/1"):
        answer = client.get(path)
        assert answer.status_code == 404 and "Not found" in answer.text, path
    assert client.post("/tasks/confirm", data={"csrf_token": csrf, "action": "cancel", "ids": "1"}).status_code == 404
    assert client.post("/templates", data={"csrf_token": csrf, "name": "x"}).status_code == 404
    assert client.get("/tasks").status_code == 200 and client.get("/tokens").status_code == 200


def test_the_queues_page_shows_counts_workers_by_role_with_their_task_and_the_next_runs(client, start_role):
    log_in(client, "ada", "admin")
    enqueue_operation("demo.moodle", {})  # waits: no worker takes the moodle queue here
    start_role("scheduler")
    worker = start_role("worker-vm-clone")
    running = enqueue_operation("demo.pve_vm_clone", {"duration": 20})
    wait_for(lambda: load_task(running.id).status == "processing", 30, "the clone-queue demo to run", worker)
    page = wait_for(lambda: (text := client.get("/queues").text) and "purge-audit" in text and text, 30,
                    "the scheduler's periodic jobs on the page")

    row = re.search(r'<tr id="queue-moodle">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row)[0] == "1"  # one waiting
    assert "worker-vm-clone (1)" in page and f'href="/tasks/{running.id}">Task #{running.id}' in page
    assert re.search(r"purge-audit</td><td><code>45 3 \* \* \*</code></td><td>[^<]*</td><td>\d{4}-\d\d-\d\d \d\d:\d\d",
                     page)


def test_a_new_token_is_shown_once_kept_by_no_cache_and_nowhere_in_the_audit_log(client):
    from sqlalchemy import select

    from openvle.db.models import AuditEntry

    csrf = log_in(client, "sue")
    made = client.post("/tokens", data={"csrf_token": csrf, "name": "grading", "days": "7"})
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    token = re.search(r'id="token-value" class="token" readonly value="([^"]+)"', made.text).group(1)
    assert token not in client.get("/tokens").text
    with session_scope() as session:
        details = [f"{e.path} {e.detail}" for e in session.execute(select(AuditEntry)).scalars()]
    assert any("token 'grading' made" in d for d in details) and not any(token in d for d in details)
