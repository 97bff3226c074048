"""Accounts: passwords hashed with argon2, tokens stored hashed and revocable, failed logins slowed and
then refused, first passwords through an emailed one-time link (real SMTP: the sandbox mail catcher),
the CLI's `openvle user` and `openvle token`, and no secret in an answer, a log line or the audit log."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from conftest import ROOT, WAIT_SCALE, wait_for
from helpers import account, bearer
from openvle.accounts import throttle
from openvle.db.engine import session_scope
from openvle.db.models import AccountLink, ApiToken, AuditEntry, Email, User, utcnow
from sandbox.mail import MailCatcher

PASSWORD = "tr0ub4dor&3-long"


@pytest.fixture
def client(clean):
    from openvle.backend.app import create_app

    return TestClient(create_app())


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock, moved by the test instead of waited for."""
    now = {"t": 1_900_000_000.0}
    monkeypatch.setattr(throttle, "clock", lambda: now["t"])
    return now


def audit_text() -> str:
    with session_scope() as session:
        rows = session.execute(select(AuditEntry)).scalars().all()
        return " ".join(f"{r.username} {r.path} {r.action} {r.object_id} {r.detail}" for r in rows)


def test_a_password_is_stored_only_as_an_argon2id_hash_and_logs_in(client, caplog):
    caplog.set_level(logging.DEBUG)
    user_id, _ = account("ada", "teacher", password=PASSWORD)
    with session_scope() as session:
        stored = session.get(User, user_id).password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    ok = client.post("/api/auth/login", json={"username": "ada@uni.example", "password": PASSWORD})
    assert ok.status_code == 200 and ok.json()["user"]["role"] == "teacher"
    for wrong in ({"username": "ada", "password": "not-it-at-all"}, {"username": "nobody", "password": PASSWORD}):
        refused = client.post("/api/auth/login", json=wrong)
        assert (refused.status_code, refused.json()) == (401, {"error": "wrong user name or password"})
    everything = caplog.text + audit_text() + ok.text
    assert PASSWORD not in everything and stored not in everything
    assert "failed login" in audit_text() and "auth.login" in audit_text()


def test_failed_logins_are_slowed_then_refused_for_a_while_known_account_or_not(client, clock, settings_env):
    settings_env(LOGIN_MAX_FAILURES="5", LOGIN_LOCKOUT_MINUTES="15")
    account("bob", password=PASSWORD)

    def login(name: str, password: str):
        return client.post("/api/auth/login", json={"username": name, "password": password})

    for name in ("bob", "ghost"):  # the same answers whether the account exists or not
        assert [login(name, "wrong-password-x").status_code for _ in range(3)] == [401, 401, 401]
        slowed = login(name, "wrong-password-x")
        assert slowed.status_code == 429 and slowed.headers["retry-after"] == "1"
        assert "too many failed logins: try again in 1 s" in slowed.json()["error"]
        clock["t"] += 1
        assert login(name, "wrong-password-x").status_code == 401  # the 4th failure: next wait 2 s
        clock["t"] += 1
        assert login(name, "wrong-password-x").status_code == 429
        clock["t"] += 1
        assert login(name, "wrong-password-x").status_code == 401  # the 5th: locked out
        clock["t"] += 60
    locked = login("bob", PASSWORD)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 14 * 60 - 120
    clock["t"] += 15 * 60
    assert login("bob", PASSWORD).status_code == 200
    assert login("bob", "wrong-password-x").status_code == 401  # a success cleared the count
    assert login("bob", "wrong-password-x").status_code == 401


def test_tokens_are_stored_hashed_shown_once_and_stop_when_revoked_expired_or_the_user_is_off(client):
    user_id, _ = account("carol")
    made = client.post("/api/auth/tokens", json={"username": "carol", "password": "x"})
    assert made.status_code == 422  # name missing: a token is always named
    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id).values(password_hash=None))
    from openvle.accounts.tokens import create_token

    row, token = create_token(user_id, "grading", days=30)
    with session_scope() as session:
        stored = session.execute(select(ApiToken.token_hash).where(ApiToken.id == row.id)).scalar_one()
    assert token not in stored and len(stored) == 64
    assert client.get("/api/me", headers=bearer(token)).json()["username"] == "carol"
    listed = client.get("/api/me/tokens", headers=bearer(token))
    assert token not in listed.text and "grading" in listed.text

    with session_scope() as session:
        session.execute(update(ApiToken).where(ApiToken.id == row.id).values(expires_at=utcnow()))
    assert client.get("/api/me", headers=bearer(token)).status_code == 401
    _, other = create_token(user_id, "other")
    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id).values(active=False))
    assert client.get("/api/me", headers=bearer(other)).status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Basic Y2Fyb2w6eA=="}).status_code == 401


def test_a_token_for_too_long_is_refused_with_the_limit(client):
    _, token = account("dave")
    refused = client.post("/api/me/tokens", json={"name": "forever", "days": 4000}, headers=bearer(token))
    assert refused.status_code == 422
    too_long = client.post("/api/me/tokens", json={"name": "long", "days": 400}, headers=bearer(token))
    assert too_long.status_code == 422 and "1 to 365 days (API_TOKEN_MAX_DAYS)" in too_long.json()["error"]


@pytest.fixture(scope="module")
def catcher():
    server = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_new_account_chooses_its_first_password_through_an_emailed_one_time_link(client, catcher, settings_env,
                                                                                  start_role, caplog):
    catcher.state.reset()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(catcher.smtp_port), "PUBLIC_URL": "https://labs.uni.example"}
    settings_env(**env)
    worker = start_role("worker", **env)
    _, admin = account("root", "admin")

    made = client.post("/api/users", json={"username": "erin", "email": "erin@uni.example", "role": "teacher"},
                       headers=bearer(admin))
    assert made.status_code == 201 and made.json()["has_password"] is False
    mails = wait_for(lambda: catcher.state.messages(to="erin@uni.example"), 30, "the invite email", worker)
    text = mails[0]["text"]
    link = re.search(r"https://labs\.uni\.example/set-password\?token=(ovl_[\w-]+)", text)
    assert link, text
    token = link[1]
    with session_scope() as session:  # the database never held the link: only a placeholder and a hash
        bodies = " ".join(e.body_text + (e.body_html or "") for e in session.execute(select(Email)).scalars())
        hashes = list(session.execute(select(AccountLink.token_hash)).scalars())
    assert token not in bodies and token not in str(hashes) and "@@OPENVLE-ONE-TIME-LINK@@" in bodies

    page = client.get("/set-password", params={"token": token})
    assert page.status_code == 200 and "Choose your password" in page.text
    short = client.post("/api/auth/password", json={"token": token, "password": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.json()["error"]
    done = client.post("/set-password", data={"token": token, "password": PASSWORD, "again": PASSWORD})
    assert done.status_code == 200 and "Your password is set" in done.text
    again = client.post("/api/auth/password", json={"token": token, "password": "another-password"})
    assert again.status_code == 422 and "unknown, used or expired" in again.json()["error"]
    assert client.post("/api/auth/login", json={"username": "erin", "password": PASSWORD}).status_code == 200

    # Forgot it: the same answer for an account that does not exist, and a link only for the real one.
    for name in ("erin", "nobody-here"):
        asked = client.post("/api/auth/password-reset", json={"username": name})
        assert asked.status_code == 202 and asked.json()["message"].startswith("if that account exists")
    reset = wait_for(lambda: [m for m in catcher.state.messages(to="erin@uni.example")
                              if m["subject"] == "Your OpenVLE password"], 30, "the reset email", worker)
    assert "set-password?token=ovl_" in reset[0]["text"]
    assert len(catcher.state.messages()) == 2
    everything = caplog.text + audit_text() + worker.output
    assert token not in everything and PASSWORD not in everything


@pytest.mark.slow
def test_people_of_an_event_made_through_the_api_become_accounts_and_are_invited_once(client, catcher, settings_env,
                                                                                     start_role):
    catcher.state.reset()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(catcher.smtp_port)}
    settings_env(**env)
    worker = start_role("worker", **env)
    from openvle.lab_events import create_template

    create_template("tpl", pve_vmid=9001, node="pve1")
    teacher_id, teacher = account("tina", "teacher", password=PASSWORD)  # has one: no invite
    body = {"name": "Lab", "template": "tpl", "start": "2031-03-01T09:00:00Z", "end": "2031-03-01T12:00:00+01:00",
            "participants": [{"username": "p1", "email": "p1@uni.example"}, {"username": "p2",
                                                                              "email": "p2@uni.example"}]}
    made = client.post("/api/events", json=body, headers=bearer(teacher))
    assert made.status_code == 201, made.text
    event = made.json()
    assert {m["username"]: m["role"] for m in event["members"]} == {"p1": "participant", "p2": "participant",
                                                                     "tina": "teacher"}
    csv_body = "username,email,first_name,last_name\np3,p3@uni.example,Pat,Three\np1,p1@uni.example,,\n"
    added = client.post(f"/api/events/{event['id']}/participants/csv", content=csv_body,
                        headers={**bearer(teacher), "content-type": "text/csv"})
    assert added.status_code == 201, added.text
    assert added.json()["invited"] == ["p3"]  # p1 has an invite under way already
    wait_for(lambda: len(catcher.state.messages()) == 3, 30, "three invites", worker)
    assert sorted(m["rcpt_tos"][0] for m in catcher.state.messages()) == ["p1@uni.example", "p2@uni.example",
                                                                          "p3@uni.example"]
    bad = client.post(f"/api/events/{event['id']}/participants/csv", content="username,email\nx,not-an-email\n",
                      headers={**bearer(teacher), "content-type": "text/csv"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("CSV: line 2: email: 'not-an-email'")
    with session_scope() as session:
        roles = dict(session.execute(select(User.username, User.role)).all())
    assert roles["p1"] == "student" and roles["tina"] == "teacher"


def run_cli(stores, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openvle", *args], env=stores.env(), cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120 * WAIT_SCALE)


def test_the_first_admin_and_tokens_from_the_command_line(clean, client):
    made = run_cli(clean, "user", "create", "--admin", "root")
    assert made.returncode == 0, made.stderr
    user_id, password = made.stdout.split()
    assert "created admin 'root'" in made.stderr and "shown only now" in made.stderr
    assert client.post("/api/auth/login", json={"username": "root", "password": password}).status_code == 200

    token_run = run_cli(clean, "token", "create", "--user", "root", "--name", "ci", "--days", "7")
    assert token_run.returncode == 0, token_run.stderr
    token = token_run.stdout.strip()
    assert client.get("/api/me", headers=bearer(token)).json()["role"] == "admin"
    listed = run_cli(clean, "token", "list", "--user", "root")
    assert "ci" in listed.stdout and token not in listed.stdout
    token_id = listed.stdout.splitlines()[1].split()[0]
    assert run_cli(clean, "token", "revoke", token_id, "--user", "root").returncode == 0
    assert client.get("/api/me", headers=bearer(token)).status_code == 401

    dup = run_cli(clean, "user", "create", "--admin", "root")
    assert dup.returncode == 2 and dup.stderr.strip() == \
        "openvle: user name 'root' already has an account: change that one instead"
    bad = run_cli(clean, "user", "create", "Bad Name!", "--email", "x@uni.example")
    assert bad.returncode == 2 and "use 1 to 100 lower-case letters" in bad.stderr
    assert run_cli(clean, "user", "set", "root", "--role", "teacher").returncode == 0
    with session_scope() as session:
        actions = list(session.execute(select(AuditEntry.action).order_by(AuditEntry.id)).scalars())
        vias = set(session.execute(select(AuditEntry.via).where(AuditEntry.action.like("cli.%"))).scalars())
    assert actions.count("cli.user.create") == 1 and "cli.token.create" in actions and vias == {"cli"}
    assert password not in audit_text() and token not in audit_text()


def test_sessions_end_when_the_password_changes(client):
    account("fay", password=PASSWORD)
    login = client.post("/api/auth/login", json={"username": "fay", "password": PASSWORD})
    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    wrong = client.post("/api/me/password", json={"current_password": "nope-nope-nope", "new_password": "x" * 12},
                        headers=csrf)
    assert wrong.status_code == 422 and "current_password" in wrong.json()["error"]
    changed = client.post("/api/me/password", json={"current_password": PASSWORD, "new_password": "new-pass-2026"},
                          headers=csrf)
    assert changed.status_code == 200
    assert client.get("/api/me").status_code == 401


def test_an_event_with_a_moodle_course_refuses_people_without_first_and_last_name(client):
    """Moodle refuses an account without both names at enrolment ("The field lastname cannot be
    blank"): the event is refused when it is made, naming the person and the field."""
    from openvle.accounts.users import create_user
    from openvle.db.models import Event
    from openvle.lab_events import create_template

    create_template("with-course", pve_vmid=9001, node="pve1", moodle_course_id=2)
    create_template("no-course", pve_vmid=9001, node="pve1")
    _, admin = account("adm", "admin")
    create_user("known", "known@uni.example", first_name="Kim", last_name="Known")
    body = {"name": "Lab", "template": "with-course", "start": "2031-03-01T09:00:00Z", "end": "2031-03-01T12:00:00Z",
            "participants": [{"username": "p1", "email": "p1@uni.example", "first_name": "Pat", "last_name": "One"},
                             {"username": "known", "email": "known@uni.example"}],  # the account has both
            "teachers": [{"username": "t1", "email": "t1@uni.example"}]}

    refused = client.post("/api/events", json=body, headers=bearer(admin))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"].startswith("teachers[1] (t1): first_name is missing: the event's Moodle course "
                                              "enrols nobody without a first and a last name")
    body["teachers"] = [{"username": "t1", "email": "t1@uni.example", "first_name": "Tea"}]
    body["participants"][0].pop("last_name")
    refused = client.post("/api/events", json=body, headers=bearer(admin))
    assert refused.status_code == 422 and refused.json()["error"].startswith(
        "participants[1] (p1): last_name is missing"), refused.text
    with session_scope() as session:
        assert session.execute(select(Event.id)).first() is None  # nothing half-made
        assert set(session.execute(select(User.username)).scalars()) == {"adm", "known"}

    body["participants"][0]["last_name"] = "One"
    body["teachers"][0]["last_name"] = "Cher"
    assert client.post("/api/events", json=body, headers=bearer(admin)).status_code == 201
    no_moodle = {**body, "name": "No Course", "template": "no-course",
                 "teachers": [{"username": "t2", "email": "t2@uni.example"}]}  # nothing needs their names
    assert client.post("/api/events", json=no_moodle, headers=bearer(admin)).status_code == 201
