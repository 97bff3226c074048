"""Lab operations in Chromium against the dev system. Suspend and resume on the event page: the
teacher presses Suspend, confirms, and sees the event suspended without reloading (its VMs really
stopped in the Proxmox simulator); Resume brings it back to deployed with the VMs running. A fresh
start on My labs: the student confirms, sees "Starting afresh…", then their new VM's card in place
of the old one, and when the next fresh start is possible. Events are put in place as a finished
deploy leaves them (see test_labs_pages.deployed_lab), so these stay quick."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from openvle.db.engine import session_scope
from openvle.db.models import Event, Participant, User, Vm
from pages.test_labs_pages import deployed_lab

pytestmark = pytest.mark.browser
WAIT_SCALE = float(os.environ.get("OPENVLE_TEST_WAIT_SCALE", "3"))


def _teaching(event_id: int, teacher: str | None) -> None:
    """`teacher` teaches the event, which is deployed: its participants' rows name their VMs."""
    with session_scope() as session:
        for vm in session.query(Vm).filter_by(event_id=event_id):
            session.get(Participant, vm.participant_id).vm_id = vm.id
        if teacher is not None:
            user_id = session.query(User.id).filter_by(username=teacher).scalar()
            session.add(Participant(event_id=event_id, user_id=user_id, role="teacher"))
        session.get(Event, event_id).status = "deployed"


def _pve_status(system, vm_ids) -> set[str]:
    with session_scope() as session:
        vmids = {session.get(Vm, vm_id).vmid for vm_id in vm_ids}
    return {v["status"] for v in system.sims["pve"].state.snapshot()["vms"] if v["vmid"] in vmids}


def test_a_teacher_suspends_and_resumes_an_event_from_its_page(login, make_user, shot, system):
    students = [make_user("student"), make_user("student")]
    vms = deployed_lab(system, students)
    with session_scope() as session:
        event_id = session.get(Vm, vms[students[0]]).event_id
    page, teacher = login("teacher")
    _teaching(event_id, teacher)

    page.goto(f"/events/{event_id}")
    expect(page.locator("#event-status")).to_have_text("deployed")
    expect(page.get_by_role("button", name="Resume")).to_be_disabled()  # nothing to resume yet
    page.evaluate("window.sameDocument = true")  # gone if the page reloads or navigates
    page.once("dialog", lambda dialog: dialog.accept())  # "Suspend …? Every VM stops …"
    page.get_by_role("button", name="Suspend").click()

    expect(page.locator("#event-status")).to_have_text("suspended")
    expect(page.locator("#suspended-note")).to_contain_text("every VM is stopped")
    expect(page.locator("#stages th[scope=col]")).to_have_text(["Participant", "revoke", "stop"])
    expect(page.get_by_role("button", name="Suspend")).to_be_disabled()
    assert _pve_status(system, vms.values()) == {"stopped"}
    shot(page, "event-suspended")

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#event-status")).to_have_text("deployed")
    assert page.evaluate("window.sameDocument === true")
    assert _pve_status(system, vms.values()) == {"running"}
    expect(page.get_by_role("button", name="Suspend")).to_be_enabled()


def test_a_student_starts_their_vm_afresh_from_my_labs(login, make_user, shot, system):
    me = make_user("student")
    old_id = deployed_lab(system, [me])[me]
    with session_scope() as session:
        event_id = session.get(Vm, old_id).event_id
    _teaching(event_id, None)
    page, _ = login("student", username=me)
    old_card = page.locator(f"#lab-{old_id}")
    expect(old_card.locator(".badge")).to_have_text("running")
    page.evaluate("window.sameDocument = true")
    page.once("dialog", lambda dialog: dialog.accept())  # "Replace … with a new copy of its template? …"
    old_card.get_by_role("button", name="Fresh copy").click()

    expect(old_card.locator(".pending")).to_have_text(re.compile("Starting afresh…|Removing…"))
    # The old card goes once its VM is deleted (after the clone, the start and the move: the longest wait here).
    expect(old_card).to_have_count(0, timeout=60_000 * WAIT_SCALE)
    expect(page.locator("article.card")).to_have_count(1)
    with session_scope() as session:
        new = session.query(Vm).filter_by(replaces_id=old_id).one()
        old_vmid = session.get(Vm, old_id).former_vmid
    new_card = page.locator(f"#lab-{new.id}")
    expect(new_card.locator(".badge")).to_have_text("running")
    expect(new_card.get_by_role("button", name="Fresh copy")).to_be_disabled()
    expect(new_card).to_contain_text("A fresh start is possible again from")
    assert page.evaluate("window.sameDocument === true")
    vmids = {v["vmid"]: v["status"] for v in system.sims["pve"].state.snapshot()["vms"]}
    assert old_vmid not in vmids and vmids[new.vmid] == "running"
    shot(page, "my-labs-fresh-start")


def test_a_teacher_starts_a_participants_vm_afresh_from_the_event_page_then_reads_when_again(login, make_user,
                                                                                            system):
    student = make_user("student")
    old_id = deployed_lab(system, [student])[student]
    with session_scope() as session:
        event_id = session.get(Vm, old_id).event_id
    page, teacher = login("teacher")
    _teaching(event_id, teacher)
    page.goto(f"/events/{event_id}")
    page.on("dialog", lambda dialog: dialog.accept())  # "Replace …'s VM with a new copy of the template? …"
    page.locator(f"#fresh-start-{student}").click()

    # The row's button acts on the new VM once the participant's VM is the new one (after the move).
    expect(page.locator(f'form[action$="/vms/{old_id}/fresh-start"]')).to_have_count(0, timeout=60_000 * WAIT_SCALE)
    page.locator(f"#fresh-start-{student}").click()  # again at once: the cooldown says when
    expect(page.locator("#flash")).to_contain_text("Too many tries")
    expect(page.locator("#flash")).to_contain_text("the next is possible from")
    with session_scope() as session:
        new = session.query(Vm).filter_by(replaces_id=old_id).one()
    assert new.state == "ready"


def test_a_teacher_gives_the_event_a_break_and_a_wrong_one_is_said_beside_its_field(login, make_user, system):
    student = make_user("student")
    vm_id = deployed_lab(system, [student])[student]
    with session_scope() as session:
        event_id = session.get(Vm, vm_id).event_id
    page, teacher = login("teacher")
    _teaching(event_id, teacher)
    page.goto(f"/events/{event_id}")

    page.get_by_label("Suspended from (UTC)").fill("2030-05-20T00:00")
    page.get_by_label("Resumed from (UTC)").fill("2030-05-13T00:00")
    page.get_by_role("button", name="Save break").click()
    expect(page.locator("#break-dates")).to_contain_text("a break ends after it begins")
    expect(page.get_by_label("Suspended from (UTC)")).to_have_value("2030-05-20T00:00")  # what was typed stays

    page.get_by_label("Resumed from (UTC)").fill("2030-05-27T00:00")
    page.get_by_role("button", name="Save break").click()
    expect(page.locator("#break")).to_contain_text("suspended from 2030-05-20 00:00, resumed from 2030-05-27 00:00")
    with session_scope() as session:
        event = session.get(Event, event_id)
        assert (event.suspend_at.day, event.resume_at.day) == (20, 27)
