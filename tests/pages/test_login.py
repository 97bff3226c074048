"""Logging in and out in Chromium, the navigation each role gets, and what a user may not see."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from openvle.db.engine import session_scope
from openvle.db.models import Template, User, Vm, VmState
from pages.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_a_page_sends_to_login_and_back_a_wrong_password_keeps_the_name(open_browser, make_user, system):
    name = make_user("student")
    page = open_browser(phone=True)
    page.goto("/labs")
    expect(page).to_have_url(re.compile(r"/login\?next=/labs$"))
    page.get_by_label("User name or email").fill(name)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    # The error sits next to the password field; what was typed as the name is still there.
    expect(page.locator("#f-password-error")).to_contain_text("Wrong user name or password")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("User name or email")).to_have_value(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/labs$"))
    expect(page.get_by_role("heading", name="My labs")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["My labs", "My tokens"])  # no Events, no admin pages for a student
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/labs")
    expect(page).to_have_url(re.compile(r"/login\?next=/labs$"))


def test_a_teacher_lands_on_events_and_a_student_may_not_open_them(login):
    page, _ = login("teacher")
    expect(page).to_have_url(re.compile(r"/events$"))
    expect(page.get_by_role("navigation", name="Main").get_by_role("link")).to_have_text(
        ["My labs", "Events", "Tasks", "My tokens"])
    student, _ = login("student")
    answer = student.goto("/events")
    assert answer.status == 403
    expect(student.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_a_student_opening_another_students_vm_page_gets_not_found(login, make_user):
    other = make_user("student")
    with session_scope() as session:
        template = Template(name=f"tpl-{other}", pve_vmid=9001, node="pve1", clone_mode="linked", protocol="rdp",
                            port=3389)
        session.add(template)
        session.flush()
        owner = session.query(User).filter_by(username=other).one()
        vm = Vm(name=f"vm-{other}", template_id=template.id, state=VmState.READY, status="running", user_id=owner.id)
        session.add(vm)
        session.flush()
        vm_id = vm.id
    page, _ = login("student")
    answer = page.goto(f"/labs/vms/{vm_id}")
    assert answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(f"vm-{other}")
    # The same answer as for an id that does not exist at all: no probing for ids.
    assert page.goto(f"/labs/vms/{vm_id + 1000}").status == 404
    # Its owner sees it.
    mine, _ = login("student", username=other)
    assert mine.goto(f"/labs/vms/{vm_id}").status == 200
    expect(mine.get_by_role("heading", name=f"vm-{other}")).to_be_visible()


def test_the_keyboard_alone_logs_in_and_skips_to_the_content(open_browser, make_user):
    name = make_user("teacher")
    page = open_browser()
    page.goto("/login")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="OpenVLE")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("User name or email")).to_be_focused()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/events$"))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the skip link: past the navigation, to the page's own content
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="New event")).to_be_focused()
