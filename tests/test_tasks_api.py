"""The task list as scripts page through it: filters, keyset pages (newest first), and the audit log's."""

from __future__ import annotations

import pytest

from helpers import admin_client
from openvle.enqueue import enqueue_operation


@pytest.fixture
def admin(clean):
    return admin_client()


def test_filters_and_keyset_pages_cover_every_task_once(admin):
    made = [enqueue_operation("demo.mails" if n % 2 else "demo.moodle", {}, target=f"event:{n % 3 + 1}",
                              requested_by=f"user:u{n % 2}").id for n in range(7)]
    seen, before, pages = [], None, 0
    while True:
        page = admin.get("/api/tasks", params={"limit": 3, **({"before": before} if before else {})}).json()
        seen += [t["id"] for t in page["items"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert seen == sorted(made, reverse=True) and pages == 3

    def ids(**params) -> list[int]:
        return [t["id"] for t in admin.get("/api/tasks", params=params).json()["items"]]

    assert ids(queue="mails") == [m for n, m in enumerate(made) if n % 2][::-1]
    assert ids(event_id=1) == [m for n, m in enumerate(made) if n % 3 == 0][::-1]
    assert ids(requested_by="user:u0", queue="moodle", limit=2) == [made[6], made[4]]
    assert ids(status="queued", operation="demo.mails") == ids(queue="mails")
    assert ids(created_after="2000-01-01T00:00:00+02:00", created_before="2000-01-02") == []
    assert admin.get("/api/tasks", params={"queue": "nope"}).status_code == 422
    assert admin.get("/api/tasks", params={"limit": 0}).status_code == 422

    audit = admin.get("/api/audit", params={"action": "tasks.control", "limit": 5}).json()
    assert audit == {"items": [], "next_before": None}
    admin.post(f"/api/tasks/{made[0]}/cancel")
    entry = admin.get("/api/audit", params={"object_type": "task", "object_id": str(made[0])}).json()["items"][0]
    assert (entry["username"], entry["action"], entry["outcome"], entry["via"]) == ("ops", "tasks.control", 200,
                                                                                    "token")
    assert entry["detail"].startswith("cancel: cancelled")
