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


def test_the_same_vm_action_asked_twice_while_in_flight_is_enqueued_once(admin):
    import datetime as dt

    from openvle.db.engine import session_scope
    from openvle.db.models import Vm, utcnow
    from openvle.lab_events import create_event, create_template

    template = create_template("tpl", pve_vmid=9001, node="pve1")
    start = utcnow() + dt.timedelta(days=3)
    event = create_event("Lab", template, start, start + dt.timedelta(hours=1))
    with session_scope() as session:
        vm = Vm(name="vm-a", template_id=template, vmid=10001, node="pve1", state="ready", event_id=event)
        session.add(vm)
        session.flush()
        vm_id = vm.id
    first = admin.post(f"/api/vms/{vm_id}/start")
    again = admin.post(f"/api/vms/{vm_id}/start")
    other = admin.post(f"/api/vms/{vm_id}/stop")
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 202)
    assert first.json()["created"] and not again.json()["created"] and other.json()["created"]
    assert again.json()["task"]["id"] == first.json()["task"]["id"] != other.json()["task"]["id"]
    assert first.json()["task"]["vm_id"] == vm_id and first.json()["task"]["requested_by"] == "user:ops"
    assert first.json()["task"]["event_id"] == event  # a click on an event's VM is in the event's Tasks
    listed = admin.get("/api/tasks", params={"event_id": event}).json()["items"]
    assert {t["id"] for t in listed} == {first.json()["task"]["id"], other.json()["task"]["id"]}
    from openvle.lab_events import progress

    assert progress(event)["stages"] == {}  # clicks are no stage of a deploy or archive
    deploy = [admin.post(f"/api/events/{event}/deploy").json() for _ in range(2)]
    assert [d["created"] for d in deploy] == [True, False] and deploy[0]["task"]["id"] == deploy[1]["task"]["id"]
    with session_scope() as session:
        session.execute(Vm.__table__.update().where(Vm.id == vm_id).values(state="provisioning"))
    busy = admin.post(f"/api/vms/{vm_id}/reset")
    assert busy.status_code == 409 and "is provisioning: only a ready VM can reset" in busy.json()["error"]
    assert admin.post(f"/api/vms/{vm_id}/migrate", json={"target": "nowhere"}).status_code == 409
