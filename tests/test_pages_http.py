"""The pages' front door over HTTP (no browser): the same session and CSRF token as the API, the
redirect to /login and back (only to this site), HTML errors with the API's status, polls that
answer 304 when nothing changed, and the pages' own headers. The browser tests are in tests/pages."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from helpers import account
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, Template, Vm, VmState

PASSWORD = "page-http-pass-1"


@pytest.fixture
def client(clean):
    from openvle.backend.app import create_app

    return TestClient(create_app())


def log_in(client: TestClient, username: str, role: str = "student") -> str:
    """Log in through the page's form; returns the session's CSRF token as the pages carry it."""
    account(username, role, password=PASSWORD)
    done = client.post("/login", data={"username": username, "password": PASSWORD}, follow_redirects=False)
    assert done.status_code == 303, done.text
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get(done.headers["location"]).text).group(1)


def own_vm(username: str) -> int:
    from sqlalchemy import select

    from openvle.db.models import User

    with session_scope() as session:
        template = Template(name=f"tpl-{username}", pve_vmid=9001, node="pve1", clone_mode="linked", protocol="rdp",
                            port=3389)
        session.add(template)
        session.flush()
        user_id = session.execute(select(User.id).where(User.username == username)).scalar_one()
        vm = Vm(name=f"vm-{username}", template_id=template.id, state=VmState.READY, status="running", user_id=user_id)
        session.add(vm)
        session.flush()
        return vm.id


def test_login_goes_back_only_to_a_page_of_this_site(client):
    account("ada", password=PASSWORD)
    assert client.get("/labs", follow_redirects=False).headers["location"] == "/login?next=/labs"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        done = client.post("/login", data={"username": "ada", "password": PASSWORD, "next": evil},
                           follow_redirects=False)
        assert done.headers["location"] == "/labs", evil  # the user's home, not the other site
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and PASSWORD not in cookie


def test_a_change_without_the_csrf_token_is_refused_with_a_page(client):
    csrf = log_in(client, "ada")
    vm_id = own_vm("ada")
    refused = client.post(f"/labs/vms/{vm_id}/stop", data={}, follow_redirects=False)
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"] and "X-CSRF-Token" in refused.text
    wrong = client.post(f"/labs/vms/{vm_id}/stop", data={"csrf_token": "0" * 64}, follow_redirects=False)
    assert wrong.status_code == 403
    # Logging out is a change too: it needs the token (no logging people out from another site).
    assert client.post("/logout", follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert client.get("/labs", follow_redirects=False).status_code == 303  # the session is over


def test_pages_answer_html_with_the_api_status_and_the_api_stays_json(client):
    log_in(client, "ada")
    bad_id = client.get("/labs/vms/nope")
    assert bad_id.status_code == 422 and "<h1>Please check what you entered</h1>" in bad_id.text
    missing = client.get("/labs/vms/999999")
    assert missing.status_code == 404 and "<h1>Not found</h1>" in missing.text
    assert "VM 999999 does not exist" in missing.text
    forbidden = client.get("/events")
    assert forbidden.status_code == 403 and "Only teachers and admins may manage events" in forbidden.text
    unknown = client.get("/no-such-page", headers={"accept": "text/html"})
    assert unknown.status_code == 404 and "<h1>Not found</h1>" in unknown.text
    api = client.get("/api/vms/999999")
    assert api.status_code == 404 and api.json() == {"error": "VM 999999 does not exist"}


def test_a_poll_answers_304_while_nothing_changes_and_htmx_is_sent_to_login(client):
    log_in(client, "ada")
    own_vm("ada")
    first = client.get("/labs/cards", headers={"hx-request": "true"})
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache, private"
    etag = first.headers["etag"]
    assert f'"If-None-Match": {etag.replace(chr(34), chr(92) + chr(34)).join(chr(34) * 2)}' in first.text
    again = client.get("/labs/cards", headers={"hx-request": "true", "if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    client.cookies.clear()
    gone = client.get("/labs/cards", headers={"hx-request": "true", "hx-current-url": "http://x/labs"})
    # htmx would swap a login page into the card: it is told to go to the login page instead.
    assert (gone.status_code, gone.headers["hx-redirect"]) == (204, "/login?next=/labs")


def test_pages_load_nothing_from_elsewhere_and_htmx_is_vendored(client):
    log_in(client, "ada")
    page = client.get("/labs")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith(("/", "#")) for s in sources), sources
    htmx = client.get("/static/pages/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]
    assert "Zero-Clause BSD" in client.get("/static/pages/vendor/htmx-2.0.11.LICENSE").text


def test_a_wrong_password_says_so_beside_the_field_and_is_audited_without_it(client):
    account("ada", password=PASSWORD)
    page = client.post("/login", data={"username": "ada", "password": "not-the-one-1"})
    assert page.status_code == 401
    assert 'value="ada"' in page.text
    assert re.search(r'id="f-password-error" class="field-error" role="alert">Wrong user name or password', page.text)
    empty = client.post("/login", data={"username": "", "password": ""})
    assert empty.status_code == 422 and "Type your user name or email." in empty.text
    with session_scope() as session:
        details = [(e.action, e.outcome, e.detail) for e in session.query(AuditEntry).all()]
    assert ("pages.login", 401, "failed login") in details
    assert all("not-the-one-1" not in str(d) for d in details)


def errors_beside_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'id="([\w-]+)-error" class="field-error" role="alert">([^<]+)<', page))


def test_event_forms_keep_what_was_typed_and_say_what_is_wrong_beside_it(client):
    from openvle.lab_events import create_template

    create_template("ubuntu", pve_vmid=9001, node="pve1", protocol="rdp")
    csrf = log_in(client, "tea", "teacher")
    bad = client.post("/events/new", data={"csrf_token": csrf, "name": "Lab Ünï", "description": "Week 3",
                                           "template": "", "start": "2031-01-02T09:00", "end": "2031-01-01T09:00"})
    assert bad.status_code == 422
    assert errors_beside_fields(bad.text) == {
        "f-template": "Choose the template every participant&#39;s VM is cloned from.",
        "f-end": "2031-01-01T09:00:00+00:00 is not after start 2031-01-02T09:00:00+00:00: "
                 "an event ends after it starts"}
    assert 'value="Lab Ünï"' in bad.text and ">Week 3</textarea>" in bad.text and 'value="2031-01-02T09:00"' in bad.text
    made = client.post("/events/new", data={"csrf_token": csrf, "name": "Lab", "template": "ubuntu",
                                            "start": "2031-01-01T09:00", "end": "2031-01-01T17:00"},
                       follow_redirects=False)
    event = made.headers["location"]
    assert made.status_code == 303 and client.get(event).status_code == 200

    person = client.post(f"{event}/participants", data={"csrf_token": csrf, "username": "Ada L", "email": "ada",
                                                         "first_name": "Ada"})
    assert person.status_code == 422 and 'value="Ada L"' in person.text and 'value="Ada"' in person.text
    assert set(errors_beside_fields(person.text)) == {"add-username", "add-email"}

    pasted = "username,email\nbob,bob@uni.example\ncy,not-an-email\n"
    csv = client.post(f"{event}/participants/csv", data={"csrf_token": csrf, "text": pasted, "step": "preview"})
    assert csv.status_code == 422
    assert errors_beside_fields(csv.text)["csv-text"].startswith("CSV: line 3: email:")
    assert "bob,bob@uni.example\ncy,not-an-email" in csv.text  # the pasted lines are still there to fix

    dates = client.post(f"{event}/dates", data={"csrf_token": csrf, "start": "2031-01-01T09:00", "end": "bogus"})
    assert dates.status_code == 422 and errors_beside_fields(dates.text)["dates-end"].startswith("&#39;bogus&#39; is")
    moved = client.post(f"{event}/dates", data={"csrf_token": csrf, "start": "2031-02-01T09:00",
                                                "end": "2031-02-01T17:00"}, follow_redirects=False)
    assert moved.status_code == 303 and "2031-02-01 09:00 UTC" in client.get(event).text


def test_a_participant_is_removed_only_after_a_confirmation_and_a_student_cannot(client):
    from openvle.lab_events import create_event, create_template
    from openvle.specs import utc

    csrf = log_in(client, "tea", "teacher")
    template = create_template("ubuntu", pve_vmid=9001, node="pve1", protocol="rdp")
    start = utc(dt.datetime(2031, 1, 1, 9, tzinfo=dt.UTC))
    event_id = create_event("Lab", template, start, start + dt.timedelta(hours=8), status="draft",
                            participants_=[{"username": "bob", "email": "bob@uni.example"}],
                            teachers=[{"username": "tea", "email": "tea@uni.example"}])
    members = client.get(f"/events/{event_id}").text
    ask = re.search(rf'href="(/events/{event_id}/participants/(\d+)/remove)" aria-label="Remove bob"', members)
    confirm = client.get(ask[1])
    assert confirm.status_code == 200 and "Remove bob from Lab?" in confirm.text
    assert "bob@uni.example" in client.get(f"/events/{event_id}").text  # asking removed nobody
    done = client.post(ask[1], data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and "bob@uni.example" not in client.get(f"/events/{event_id}").text

    other = TestClient(client.app)
    log_in(other, "eve")
    assert other.get(f"/events/{event_id}").status_code == 404  # not in it: it does not exist for her


def test_a_refused_button_says_why_in_the_page_flash(client):
    from openvle.lab_events import create_event, create_template
    from openvle.specs import utc

    csrf = log_in(client, "tea", "teacher")
    template = create_template("ubuntu", pve_vmid=9001, node="pve1", protocol="rdp")
    start = utc(dt.datetime(2031, 1, 1, 9, tzinfo=dt.UTC))
    event_id = create_event("Lab", template, start, start + dt.timedelta(hours=8), status="draft",
                            teachers=[{"username": "tea", "email": "tea@uni.example"}])
    refused = client.post(f"/events/{event_id}/run/retry", headers={"hx-request": "true", "x-csrf-token": csrf})
    assert refused.status_code == 409
    assert (refused.headers["hx-retarget"], refused.headers["hx-reswap"]) == ("#flash", "innerHTML")
    assert refused.text.strip() == (f'<p class="flash-error"><strong>Not now:</strong> Event {event_id} is draft: '
                                    'nothing failed, so nothing to retry (deploy or archive start a run)</p>')


def test_my_labs_says_each_vms_state_in_words_and_lists_only_ones_own(clean):
    """service.vms.my_labs, which the cards draw: the state in words, the action pending, the last
    failure; a teacher's My labs holds their own VMs, not their students'."""
    import uuid

    from openvle.accounts.identity import Actor
    from openvle.db.models import Event, Participant, Task
    from openvle.service.vms import my_labs

    student, _ = account("ada")
    teacher, _ = account("tea", "teacher")
    with session_scope() as session:
        template = Template(name="tpl", pve_vmid=9001, node="pve1", clone_mode="linked", protocol="rdp", port=3389)
        session.add(template)
        session.flush()
        event = Event(name="Lab", template_id=template.id, start_at=dt.datetime(2031, 1, 1),
                      end_at=dt.datetime(2031, 1, 2), status="deployed")
        session.add(event)
        session.flush()
        session.add(Participant(event_id=event.id, user_id=teacher, role="teacher"))
        vms = {}
        for name, state, status in (("cloning", "provisioning", None), ("broken", "provisioning", None),
                                    ("on", "ready", "running"), ("off", "ready", "stopped"), ("gone", "deleted", None)):
            vms[name] = Vm(name=name, template_id=template.id, state=state, status=status, user_id=student,
                           event_id=event.id)
            session.add(vms[name])
        session.flush()

        def task(vm: str, operation: str, status: str, error: str | None = None):
            session.add(Task(operation=operation, queue="pve_vm_actions", status=status, error=error,
                             vm_id=vms[vm].id, rq_job_id=uuid.uuid4().hex))
            session.flush()

        task("cloning", "vm.clone", "processing")
        task("broken", "vm.clone", "error", "template 9001 does not exist")
        task("on", "vm.stop", "error", "VM is locked (backup)")
        task("on", "vm.stop", "queued")
        task("off", "vm.start", "error", "timeout")
        task("off", "vm.stop", "success")  # a later success: the old failure is no news any more
    seen = {lab.vm.name: lab for lab in my_labs(Actor(student, "ada", "student", "session"))}
    assert {name: (lab.state, lab.pending, lab.can_act) for name, lab in seen.items()} == {
        "cloning": ("being cloned", None, False), "broken": ("failed", None, False),
        "on": ("running", "stop", False), "off": ("stopped", None, True)}
    assert seen["broken"].last_error == "Making the VM (clone) did not work: template 9001 does not exist"
    assert seen["on"].last_error == "Stop did not work: VM is locked (backup)"
    assert seen["off"].last_error is None and seen["on"].event_name == "Lab"
    assert my_labs(Actor(teacher, "tea", "teacher", "session")) == []
