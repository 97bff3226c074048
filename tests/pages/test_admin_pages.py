"""The admin pages in Chromium: an admin requeues the failed Tasks of an event after a fault, and sees
them succeed; teachers see their events' Tasks and no admin page; everyone manages their own tokens;
templates, users and the audit log; queues and workers."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from conftest import wait_for
from helpers import retry_now
from openvle.db.engine import session_scope
from openvle.db.models import Event, Task, utcnow
from openvle.enqueue import enqueue_operation
from openvle.lab_events import create_event, create_template, request_deploy
from pages.conftest import unique

pytestmark = pytest.mark.browser

ADMIN_PAGES = ("/queues", "/nodes", "/templates", "/users", "/audit")
GUAC_ATTEMPTS = 6  # the guacamole queue: WORKER_MAX_RETRY (5) retries after the first attempt


def people(n: int, role: str = "student") -> list[dict]:
    return [{"username": (name := unique(role)), "email": f"{name}@uni.example", "first_name": role.title(),
             "last_name": name} for _ in range(n)]


def make_event(n: int, teachers: list[dict] | None = None) -> int:
    template = create_template(unique("tpl"), pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
    start = utcnow() + dt.timedelta(days=3)
    return create_event(unique("Lab "), template, start, start + dt.timedelta(days=1), participants_=people(n),
                        teachers=teachers or people(1, "teacher"))


def event_tasks(event_id: int, operation: str) -> list[Task]:
    with session_scope() as session:
        return list(session.execute(select(Task).where(Task.event_id == event_id, Task.operation == operation)
                                    .order_by(Task.id)).scalars())


def event_status(event_id: int) -> str:
    with session_scope() as session:
        event = session.get(Event, event_id)
        return event.status if event.active_task_id is None else "busy"


def test_an_admin_requeues_the_failed_tasks_of_an_event_after_a_fault_and_sees_them_succeed(login, system, shot):
    guac = system.sims["guac"]
    event_id = make_event(2)
    guac.state.set_faults(error_every=1)  # every request to Guacamole fails: each provision runs out of retries
    try:
        request_deploy(event_id, requested_by="user:someone")
        provisions = wait_for(lambda: len(event_tasks(event_id, "guac.provision")) == 2
                              and event_tasks(event_id, "guac.provision"), 60, "the provision steps", system.roles[1])
        # The teacher's Guacamole login fails the same way: its retries are made due as well.
        teacher = wait_for(lambda: event_tasks(event_id, "guac.teacher_account"), 60, "the teacher's login step",
                           system.roles[1])
        for attempt in range(1, GUAC_ATTEMPTS):  # each retry made due now, not waited for
            for task in provisions + teacher:
                retry_now(task.id, attempt)
        wait_for(lambda: event_status(event_id) == "deployed_with_failures", 60, "the deploy to settle",
                 system.roles[1])
    finally:
        guac.state.set_faults(error_every=0)  # Guacamole is well again
    failed = [t.id for t in provisions]

    page, admin = login("admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    page.get_by_label("Event", exact=True).select_option(str(event_id))
    page.get_by_label("Status", exact=True).select_option("error")
    page.get_by_label("Operation", exact=True).select_option("guac.provision")
    page.get_by_role("button", name="Show").click()
    rows = page.locator("#task-rows tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("guac.provision")
    expect(rows.first).to_contain_text(f"{GUAC_ATTEMPTS}/{GUAC_ATTEMPTS}")  # attempts used up
    page.get_by_role("button", name="Requeue…").click()  # nothing ticked yet: nothing happens, it says why
    expect(page.get_by_role("heading", name="Select Tasks first")).to_be_visible()
    page.get_by_role("link", name="Back to the Tasks").click()
    page.get_by_role("link", name="Tick all shown").click()
    for task_id in failed:
        expect(page.get_by_label(f"Select Task {task_id} (guac.provision)")).to_be_checked()
    with page.expect_response(lambda r: "/tasks/rows" in r.url and r.status == 200):
        pass  # the table refreshed itself (its rows came anew, unticked) and the ticks stayed
    for task_id in failed:
        expect(page.get_by_label(f"Select Task {task_id} (guac.provision)")).to_be_checked()
    expect(page.get_by_label("Event", exact=True)).to_have_value(str(event_id))  # the filters stay as chosen
    shot(page, "tasks", readme=True)

    page.get_by_role("button", name="Requeue…").click()
    expect(page.get_by_role("heading", name="Requeue 2 Tasks?")).to_be_visible()
    which = page.locator("#confirm-which li")
    expect(which).to_have_count(2)
    for item, task_id in zip(which.all(), failed, strict=True):
        expect(item).to_contain_text(f"#{task_id} guac.provision")
    assert all(t.status == "error" for t in event_tasks(event_id, "guac.provision"))  # nothing happened yet
    page.get_by_role("button", name="Requeue 2 Tasks").click()

    expect(page.get_by_role("heading", name="Requeued 2 Tasks")).to_be_visible()
    expect(page.locator("#done-which li").first).to_contain_text(f"requeued: attempts {GUAC_ATTEMPTS + 1} to")
    for task_id in failed:  # the table keeps itself current: no reload
        expect(page.locator(f"#task-row-{task_id} .badge")).to_have_text("success")
    page.get_by_role("link", name=f"#{failed[0]}").first.click()
    expect(page.get_by_role("heading", name=f"Task {failed[0]}")).to_be_visible()
    attempts = page.get_by_role("region", name="Attempts").locator("tbody tr")
    expect(attempts).to_have_count(GUAC_ATTEMPTS + 1)
    expect(attempts.last).to_contain_text("success")
    expect(page.get_by_role("region", name="Log lines")).to_contain_text(
        f"requeued by user:{admin} after {GUAC_ATTEMPTS} attempt(s)")


def test_teachers_and_students_reach_no_admin_page_and_teachers_see_only_their_events_tasks(login, make_user):
    teacher_name = make_user("teacher")
    mine = make_event(1, teachers=[{"username": teacher_name, "email": f"{teacher_name}@uni.example"}])
    other = make_event(1)
    # A Task of each event (a quick one: no deploy needed to see who sees it).
    theirs = enqueue_operation("demo.noop", {}, target=f"event:{other}", requested_by="user:someone")
    own = enqueue_operation("demo.noop", {}, target=f"event:{mine}", requested_by="user:someone")

    student, _ = login("student")
    teacher, _ = login("teacher", username=teacher_name, phone=True)
    for page in (student, teacher):
        for path in ADMIN_PAGES:
            assert page.goto(path).status == 404, path
            expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        links = page.get_by_role("navigation", name="Main").get_by_role("link")
        for label in ("Queues", "Nodes", "Templates", "Users", "Audit log"):
            expect(links.filter(has_text=label)).to_have_count(0)
    assert student.goto("/tasks").status == 404
    assert student.goto(f"/tasks/{own.id}").status == 404

    assert teacher.goto("/tasks").status == 200
    expect(teacher.locator(f"#task-row-{own.id}")).to_be_visible()
    expect(teacher.locator(f"#task-row-{theirs.id}")).to_have_count(0)
    expect(teacher.get_by_role("button", name="Requeue…")).to_have_count(0)  # the controls are admins'
    assert teacher.evaluate("document.documentElement.scrollWidth") <= 375  # fits a phone; the table scrolls
    assert teacher.goto(f"/tasks/{theirs.id}").status == 404
    assert teacher.goto(f"/tasks/{own.id}").status == 200
    # Posting the control form anyway (with the session's CSRF token) changes nothing.
    csrf = teacher.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = teacher.request.post("/tasks/act", form={"csrf_token": csrf, "action": "cancel", "ids": str(own.id)})
    assert answer.status == 404
    with session_scope() as session:
        assert session.get(Task, own.id).status != "cancelled"


def test_everyone_makes_a_token_seen_once_and_revokes_it(login, system):
    page, name = login("student", phone=True)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My tokens").click()
    page.get_by_label("What uses it").fill("grading-script")
    page.get_by_label("Days it lasts").fill("99999")
    page.get_by_role("button", name="Make token").click()
    expect(page.locator("#f-days-error")).to_contain_text("less than or equal to 3650")
    expect(page.get_by_label("What uses it")).to_have_value("grading-script")  # what was typed stays
    page.get_by_label("Days it lasts").fill("30")
    page.get_by_role("button", name="Make token").click()
    token = page.get_by_label("Token", exact=True).input_value()
    expect(page.locator("#new-token")).to_contain_text("shown this once")
    assert httpx.get(f"{system.url}/api/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == name

    page.goto("/tokens")  # shown once: a later visit has its first characters only
    expect(page.locator("main")).not_to_contain_text(token)
    row = page.locator("#token-table tbody tr", has_text="grading-script")
    expect(row).to_contain_text(token[:8])
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#note")).to_have_text("Token grading-script revoked.")
    expect(page.locator("#token-table tbody tr", has_text="grading-script")).to_contain_text("revoked")
    assert httpx.get(f"{system.url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_an_admin_makes_a_template_and_a_user_and_finds_both_in_the_audit_log(login, system):
    page, admin = login("admin")
    page.goto("/templates")
    name = unique("tpl")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Proxmox VM id of the template").fill("5")
    page.get_by_label("Proxmox node it lives on").fill("pve1")
    page.get_by_role("button", name="Make template").click()
    # The problem next to its field; nothing typed is lost.
    expect(page.locator("#f-pve_vmid-error")).to_contain_text("greater than or equal to 100")
    expect(page.get_by_label("Name", exact=True)).to_have_value(name)
    page.get_by_label("Proxmox VM id of the template").fill("9001")
    page.get_by_role("button", name="Make template").click()
    expect(page.get_by_role("heading", name=f"Template {name}")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Template made.")

    page.goto("/users")
    username = unique("newbie")
    page.get_by_label("User name", exact=True).fill(username)
    page.get_by_label("Email", exact=True).fill(f"{username}@uni.example")
    page.get_by_label("Role", exact=True).select_option("teacher")
    page.get_by_role("button", name="Make account").click()
    expect(page.get_by_role("heading", name=f"User {username}")).to_be_visible()
    expect(page.locator("#note")).to_contain_text("emailed a link")
    mail = system.sims["mail"]
    wait_for(lambda: any(m["rcpt_tos"] == [f"{username}@uni.example"] for m in mail.state.messages()), 30,
             "the invitation email")
    page.get_by_label("Role", exact=True).select_option("student")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#note")).to_have_text("Saved.")
    expect(page.get_by_label("Role", exact=True)).to_have_value("student")
    # An email someone has already: said next to the email field, the rest as typed.
    page.goto("/users")
    taken = unique("again")
    page.get_by_label("User name", exact=True).fill(taken)
    page.get_by_label("Email", exact=True).fill(f"{username}@uni.example")
    page.get_by_role("button", name="Make account").click()
    expect(page.locator("#f-email-error")).to_contain_text("already has an account")
    expect(page.get_by_label("User name", exact=True)).to_have_value(taken)

    page.goto("/audit")
    page.get_by_label("User", exact=True).fill(admin)
    page.get_by_label("Action").fill("pages.template_create")
    page.get_by_role("button", name="Show").click()
    entries = page.locator("#audit-table tbody tr")
    expect(entries).to_have_count(2)  # the refused try (422) and the one that made it (303)
    expect(entries.first).to_contain_text("303")
    expect(entries.last).to_contain_text("422")


def test_queues_and_workers_show_each_queue_and_the_worker_by_role(login, system):
    page, _ = login("admin")
    page.goto("/queues")
    expect(page.locator("#queue-table tbody tr")).to_have_count(7)
    expect(page.locator("#queue-pve_vm_clone")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile(r"^worker-all \(1\)$"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("No scheduler is running")  # make dev's scheduler is not started here
