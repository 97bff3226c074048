"""The deploy mode on an event's page in Chromium: its teacher makes it "ready by its start" and reads
when each batch runs; a start too near is refused under the control, saying how to fix it; the audit
log records who set the mode."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from conftest import wait_for
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, User, utcnow
from openvle.lab_events import create_event, create_template
from pages.conftest import unique

pytestmark = pytest.mark.browser


def _event(teacher: str, start: dt.datetime) -> int:
    template = create_template(unique("spread"), pve_vmid=9778, node="pve1")
    with session_scope() as session:
        me = session.execute(select(User.email, User.first_name, User.last_name).where(User.username == teacher)).one()
    people = [{"username": unique("sp"), "email": f"{unique('sp')}@uni.example", "first_name": "Sp",
               "last_name": "Read"} for _ in range(3)]
    return create_event(unique("Spread lab "), template, start, start + dt.timedelta(hours=3), participants_=people,
                        teachers=[{"username": teacher, "email": me.email, "first_name": me.first_name,
                                   "last_name": me.last_name}])


def test_a_teacher_makes_an_event_ready_by_its_start_and_sees_its_batch_times(login, shot):
    page, teacher = login("teacher")
    now = utcnow()
    start = dt.datetime(now.year, now.month, now.day, 9) + dt.timedelta(days=300)
    event_id = _event(teacher, start)

    page.goto(f"/events/{event_id}")
    expect(page.locator("#deploy-batches")).to_have_count(0)
    page.get_by_label("Deployed").select_option("ready_by_start")
    page.get_by_role("button", name="Save deploy mode").click()
    rows = page.locator("#deploy-batches tbody tr")
    expect(rows.first).to_contain_text(f"{start - dt.timedelta(hours=12):%Y-%m-%d %H:%M}")
    expect(rows.first).to_contain_text("planned")
    expect(page.locator("#deploy-plan")).to_contain_text("clone slot(s)")
    expect(page.get_by_label("Deployed")).to_have_value("ready_by_start")
    shot(page, "event-spread-deploy")

    def audited():
        with session_scope() as session:
            return session.execute(select(AuditEntry.username, AuditEntry.detail).where(
                AuditEntry.object_id == str(event_id), AuditEntry.action == "pages.event_deploy_mode")).all()

    wait_for(audited, 30, "the mode's audit record")
    assert [tuple(a) for a in audited()] == [(teacher, "changed deploy_mode (deploy_mode ready_by_start)")]

    near = _event(teacher, utcnow() + dt.timedelta(minutes=20))
    page.goto(f"/events/{near}")
    page.get_by_label("Deployed").select_option("ready_by_start")
    page.get_by_role("button", name="Save deploy mode").click()
    expect(page.locator("#f-deploy-mode-error")).to_contain_text("DEPLOY_BATCH_MINUTES")
    expect(page.locator("#f-deploy-mode-error")).to_contain_text("move the start later")
    expect(page.locator("#deploy-batches")).to_have_count(0)
