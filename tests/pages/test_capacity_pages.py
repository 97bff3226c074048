"""The capacity answer on an event's page in Chromium: its teacher reads "does not fit" with the
numbers and is refused a deploy with the reason; an admin gets "Deploy anyway", confirms it, and the
audit log records that they overrode the check."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from conftest import wait_for
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, Node, Task, Template, utcnow
from openvle.lab_events import create_event, create_template
from pages.conftest import unique

pytestmark = pytest.mark.browser
GIB = 1024**3


def _short_event(teacher: str) -> int:
    """An event whose three 64 GiB VMs no cluster of this run holds (the template's VM id is one the
    simulator lacks, so node sync leaves its memory as set here); far in the future, so it overlaps
    nothing else."""
    with session_scope() as session:
        if session.execute(select(Node.id).where(Node.status == "online")).first() is None:
            session.add(Node(name="pve1", status="online", maxmem=32 * GIB, mem=0))  # as node sync will say
    template = create_template(unique("huge"), pve_vmid=9777, node="pve1")
    with session_scope() as session:
        session.get(Template, template).maxmem = 64 * GIB
    start = utcnow() + dt.timedelta(days=400)
    people = [{"username": unique("big"), "email": f"{unique('big')}@uni.example", "first_name": "Big",
               "last_name": "Lab"} for _ in range(3)]
    with session_scope() as session:
        from openvle.db.models import User

        me = session.execute(select(User.email, User.first_name, User.last_name).where(User.username == teacher)).one()
    return create_event(unique("Big lab "), template, start, start + dt.timedelta(days=1), participants_=people,
                        teachers=[{"username": teacher, "email": me.email, "first_name": me.first_name,
                                   "last_name": me.last_name}])


def test_does_not_fit_is_shown_refused_for_teachers_and_overridden_by_an_admin(login, shot):
    page, teacher = login("teacher")
    event_id = _short_event(teacher)

    page.goto(f"/events/{event_id}")
    capacity = page.locator("#capacity")
    expect(capacity).to_contain_text("Capacity: does not fit, short by")
    expect(capacity).to_contain_text("3 VM(s) x 64.0 GiB = 192.0 GiB needed")
    expect(page.locator("#run-deploy-anyway")).to_have_count(0)  # teachers cannot override
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("#flash")).to_contain_text("does not fit the cluster")
    shot(page, "event-does-not-fit")

    admin_page, admin = login("admin")
    admin_page.goto(f"/events/{event_id}")
    admin_page.once("dialog", lambda dialog: dialog.accept())  # "Deploy … although it does not fit …?"
    admin_page.get_by_role("button", name="Deploy anyway").click()
    expect(admin_page.get_by_role("button", name="Deploy anyway")).to_have_count(0)  # a deploy is in flight
    with session_scope() as session:
        deploys = session.execute(select(Task.requested_by).where(
            Task.operation == "event.deploy", Task.target == f"event:{event_id}")).scalars().all()
    assert deploys == [f"user:{admin}"], deploys

    def audited():  # written just after the answer went out
        with session_scope() as session:
            return [tuple(a) for a in session.execute(select(AuditEntry.username, AuditEntry.outcome).where(
                AuditEntry.object_id == str(event_id), AuditEntry.detail == "capacity check overridden")).all()]

    wait_for(audited, 30, "the override's audit record")
    assert audited() == [(admin, 200)]
