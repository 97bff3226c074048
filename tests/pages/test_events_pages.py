"""A teacher's events in Chromium against the dev system: create an event on its page, add three
participants (the form, and CSV with a preview), deploy it and watch the percentage reach 100 %."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from openvle.accounts.users import set_password
from openvle.db.engine import session_scope
from openvle.db.models import User, utcnow
from openvle.lab_events import create_template
from pages.conftest import PASSWORD, unique

pytestmark = pytest.mark.browser


def _template() -> str:
    name = unique("ubuntu-")
    create_template(name, pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
    return name


def _when(days: float) -> str:
    return (utcnow() + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def _user_id(username: str) -> int:
    with session_scope() as session:
        return session.query(User.id).filter_by(username=username).scalar()


def _create_event(page, name: str, template: str) -> None:
    page.goto("/events")
    page.get_by_role("link", name="New event").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Template").select_option(template)
    page.get_by_label("Starts (UTC)").fill(_when(3))
    page.get_by_label("Ends (UTC)").fill(_when(4))
    page.get_by_role("button", name="Create event").click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()


@pytest.mark.slow
def test_teacher_creates_an_event_adds_three_and_watches_the_deploy_reach_100(login, shot, system):
    template = _template()
    page, _ = login("teacher")
    name = unique("Networks Lab ")
    _create_event(page, name, template)

    # One participant with the form; a mistake first: the error sits beside the field, nothing typed is lost.
    first = unique("ada")
    page.get_by_label("User name").fill(first)
    page.get_by_label("Email").fill("not-an-address")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#add-email-error")).to_contain_text("is not an email address")
    expect(page.get_by_label("User name")).to_have_value(first)
    expect(page.get_by_label("First name")).to_have_value("Ada")
    expect(page.get_by_label("Last name")).to_have_value("Lovelace")
    page.get_by_label("Email").fill(f"{first}@uni.example")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#members")).to_contain_text(f"{first}@uni.example")

    # Two more from CSV with the least it takes (no names: Moodle gets the user name for those), and
    # the first again: the preview says what will change, and that the first is in already.
    others = [unique("bob"), unique("cy")]
    csv = "username,email\n" + "".join(f"{u},{u}@uni.example\n" for u in [first, *others])
    page.get_by_label("CSV file").set_input_files(files=[{"name": "people.csv", "mimeType": "text/csv",
                                                          "buffer": csv.encode()}])
    page.get_by_role("button", name="Preview changes").click()
    preview = page.locator("#csv-preview tbody tr")
    expect(preview).to_have_count(3)
    expect(preview.nth(0)).to_contain_text("unchanged")
    expect(preview.nth(1)).to_contain_text("new account")
    expect(page.locator("#members")).not_to_contain_text(f"{others[0]}@uni.example")  # nothing stored yet
    page.get_by_role("button", name="Add these 3").click()
    rows = page.locator("#stages tbody tr")
    expect(rows).to_have_count(3)

    page.evaluate("window.sameDocument = true")  # gone if the page reloads or navigates
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("#event-status")).to_have_text(re.compile("deploying|deployed"))
    expect(page.locator("#percent")).not_to_have_text("0 %")  # the first steps settle on screen
    if "deploying" in page.locator("#event-status").inner_text():
        shot(page, "event-deploying", readme=True)
    expect(page.locator("#percent")).to_have_text("100 %")
    expect(page.locator("#event-status")).to_have_text("deployed")
    for row in range(3):
        expect(rows.nth(row).locator("td[data-stage]")).to_have_text(["done"] * 5)  # clone … course
    assert page.evaluate("window.sameDocument === true")  # all of it without a reload
    expect(page.locator("#tasks")).to_contain_text(f"{others[1]}: clone")  # steps name the person
    shot(page, "event-deployed")

    # One of them, with the password they chose from the emailed link, finds their VM running.
    set_password(_user_id(others[0]), PASSWORD)
    student, _ = login("student", username=others[0])
    card = student.locator("article.card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text(name)
    expect(card.locator(".badge")).to_have_text("running")
    expect(card.get_by_role("link", name="Open in Guacamole")).to_be_visible()


def test_a_teacher_sees_only_their_events_and_a_bad_date_keeps_the_form(login, make_user, shot):
    template = _template()
    page, _ = login("teacher")
    name = unique("Routing ")
    page.goto("/events/new")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Template").select_option(template)
    page.get_by_label("Starts (UTC)").fill(_when(5))
    page.get_by_label("Ends (UTC)").fill(_when(4))
    page.get_by_role("button", name="Create event").click()
    expect(page.locator("#f-end-error")).to_contain_text("is not after start")
    expect(page.get_by_label("Name")).to_have_value(name)
    expect(page.get_by_label("Template")).to_have_value(template)
    page.get_by_label("Ends (UTC)").fill(_when(6))
    page.get_by_role("button", name="Create event").click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    event_path = page.url.split("127.0.0.1", 1)[1].split("/", 1)[1]

    # Another teacher neither lists it nor opens it: it does not exist for them.
    other, _ = login("teacher")
    other.goto("/events")
    expect(other.locator("main")).not_to_contain_text(name)
    assert other.goto(f"/{event_path}").status == 404
    expect(other.get_by_role("heading", name="Not found")).to_be_visible()

    # On a phone, the event page fits: nothing wider than the screen but the tables' own scroll.
    phone, _ = login("admin", phone=True)
    phone.goto(f"/{event_path}")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width}px wide on a 375px phone"
    shot(phone, "event-phone")
