"""My labs in Chromium against the dev system: a student sees only their own VM, stops it and sees
it stopped without reloading (the real vm.stop job against the Proxmox simulator), and reads a
failure in plain words. The VMs are put in place as a finished deploy leaves them (a VM row and its
tagged VM in the simulator), so these stay quick; the whole deploy is in test_events_pages."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from openvle.db.engine import session_scope
from openvle.db.models import Participant, User, Vm, VmState, utcnow
from openvle.jobs.vms import MARK
from openvle.lab_events import create_event, create_template
from pages.conftest import unique

pytestmark = pytest.mark.browser


def deployed_lab(system, students: list[str]) -> dict[str, int]:
    """An event with these students, each with a running VM as a deploy leaves it: {name: vm id}."""
    template = create_template(unique("tpl-"), pve_vmid=9001, node="pve1", protocol="rdp")
    start = utcnow() + dt.timedelta(days=1)
    event_id = create_event(unique("Lab "), template, start, start + dt.timedelta(hours=8),
                            participants_=[{"username": s, "email": f"{s}@uni.example"} for s in students],
                            status="draft")
    pve, made = system.sims["pve"], {}
    with session_scope() as session:
        for name in students:
            user_id = session.execute(select(User.id).where(User.username == name)).scalar_one()
            person = session.execute(select(Participant.id).where(Participant.event_id == event_id,
                                                                  Participant.user_id == user_id)).scalar_one()
            vmid = 5000 + len(pve.state.snapshot()["vms"])
            vm = Vm(name=f"lab-{name}", template_id=template, state=VmState.READY, status="running", vmid=vmid,
                    node="pve1", event_id=event_id, participant_id=person, user_id=user_id,
                    access_link=f"{system.env['GUACAMOLE_URL']}/#/client/{name}")
            session.add(vm)
            session.flush()
            pve.state.add_vm(vmid=vmid, node="pve1", name=vm.name, status="running", tags="openvle",
                             description=f"{MARK}={vm.id}")
            made[name] = vm.id
    return made


def test_a_student_sees_only_their_vm_stops_it_and_sees_it_stopped_without_reloading(login, make_user, shot,
                                                                                    system):
    me, classmate = make_user("student"), make_user("student")
    vms = deployed_lab(system, [me, classmate])
    page, _ = login("student", username=me)
    cards = page.locator("article.card")
    expect(cards).to_have_count(1)  # the classmate's VM is not there
    card = page.locator(f"#lab-{vms[me]}")
    expect(card).to_contain_text(f"lab-{me}")
    expect(card.locator(".badge")).to_have_text("running")
    expect(card.get_by_role("link", name="Open in Guacamole")).to_have_attribute(
        "href", re.compile(rf"/#/client/{me}$"))
    expect(card.get_by_role("button", name="Start")).to_be_disabled()
    shot(page, "my-labs", readme=True)

    page.evaluate("window.sameDocument = true")  # gone if the page reloads or navigates
    # A backup holds the VM's lock: the stop waits for it, so "pending" is on screen for certain,
    # however fast the worker is; then the lock goes and the stop goes through.
    pve = system.sims["pve"].state
    with pve.lock:
        pve.vms[_vmid(vms[me])].conf["lock"] = "backup"
    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".pending")).to_have_text("Stopping…")
    expect(card.get_by_role("button", name="Reset")).to_be_disabled()
    with pve.lock:
        pve.vms[_vmid(vms[me])].conf.pop("lock")
    # The new state on its own once the Task settles.
    expect(card.locator(".badge")).to_have_text("stopped")
    expect(card.locator(".pending")).to_have_count(0)
    expect(card.get_by_role("button", name="Start")).to_be_enabled()
    expect(card.get_by_role("link", name="Open in Guacamole")).to_have_count(0)
    assert page.evaluate("window.sameDocument === true")
    assert {v["vmid"]: v["status"] for v in pve.snapshot()["vms"]}[_vmid(vms[me])] == "stopped"  # really stopped
    shot(page, "my-labs-stopped")

    # The classmate's VM page does not exist for this student.
    assert page.goto(f"/labs/vms/{vms[classmate]}").status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_a_failed_action_shows_why_in_plain_words_on_a_phone(login, make_user, shot, system):
    me = make_user("student")
    vm_id = deployed_lab(system, [me])[me]
    system.sims["pve"].state.remove_vm(_vmid(vm_id))  # someone deleted it in Proxmox behind our back
    page, _ = login("student", username=me, phone=True)
    card = page.locator(f"#lab-{vm_id}")
    card.get_by_role("button", name="Reset").click()
    expect(card.locator(".error")).to_contain_text("Reset did not work")
    expect(card.locator(".error")).to_contain_text("no longer exists in Proxmox")
    expect(card.locator(".badge")).to_have_text("missing")
    for name in ("Start", "Stop", "Reset"):
        expect(card.get_by_role("button", name=name)).to_be_disabled()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shot(page, "my-labs-failed-phone")


def _vmid(vm_id: int) -> int:
    with session_scope() as session:
        return session.get(Vm, vm_id).vmid
