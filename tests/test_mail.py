"""Email end to end: templates, the mails queue, a real SMTP server (the sandbox mail catcher)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from conftest import wait_for
from helpers import load_task, retry_now, settled
from openvle.db.engine import session_scope
from openvle.db.models import Email, utcnow
from openvle.enqueue import enqueue_operation
from openvle.errors import PermanentError
from openvle.mail import queue_email
from sandbox.mail import MailCatcher

CONTEXT = {
    "user": {"full_name": "Ada Lovelace"},
    "event": {"name": "Networks Lab", "start": "2026-12-01 09:00 UTC"},
    "access_link": "http://guac.example/guacamole/#/client/MQBjAG15c3Fs",
    "guacamole_username": "ada",
    "guacamole_password": "s3cret-guac-pass",
    "course_url": "http://moodle.example/course/view.php?id=7",
}


@pytest.fixture(scope="module")
def catcher():
    server = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0, auth=("mailer", "smtp-pass-8812"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail(catcher, settings_env):
    catcher.state.reset()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(catcher.smtp_port), "SMTP_USER": "mailer",
           "SMTP_PASSWORD": "smtp-pass-8812", "MAIL_FROM": "OpenVLE <lab@openvle.test>"}
    settings_env(**env)
    catcher.env = env
    return catcher


def email_row(email_id: int) -> Email:
    with session_scope() as session:
        return session.execute(select(Email).where(Email.id == email_id)).scalar_one()


def test_an_access_email_is_rendered_sent_and_recorded(mail, start_role):
    worker = start_role("worker", **mail.env)
    email_id, task = queue_email("event_deployed", "ada@example.org", CONTEXT, requested_by="tests")

    done = wait_for(lambda: settled(task.id), 20, "the send", worker)

    assert done.status == "success"
    row = email_row(email_id)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None and row.task_id == task.id
    (caught,) = mail.state.messages()
    assert caught["rcpt_tos"] == ["ada@example.org"] and caught["auth_user"] == "mailer"
    assert caught["subject"] == "Your lab for Networks Lab is ready"
    assert CONTEXT["access_link"] in caught["text"] and "user name: ada" in caught["text"]
    assert f'<a href="{CONTEXT["access_link"]}">' in caught["html"]
    assert "smtp-pass-8812" not in worker.output


def test_html_is_escaped_but_text_is_not(mail):
    from openvle.mail import render

    subject, text, html = render("event_starts_soon", {**CONTEXT, "event": {"name": "R&D <lab>", "start": None},
                                                       "days": 1})
    assert subject == "R&D <lab> starts in 1 day"
    assert '"R&D <lab>"' in text and "R&amp;D &lt;lab&gt;" in html


def test_a_template_that_does_not_exist_is_permanent(mail):
    with pytest.raises(PermanentError, match="no email template 'welcome'"):
        queue_email("welcome", "ada@example.org", CONTEXT)
    with pytest.raises(PermanentError, match="needs a value it was not given"):
        queue_email("event_deployed", "ada@example.org", {"user": {"full_name": "x"}})


def test_550_fails_at_once_without_retry(mail, start_role):
    mail.state.reject(["nobody@example.org"])
    worker = start_role("worker", **mail.env)
    email_id, task = queue_email("event_deployed", "nobody@example.org", CONTEXT)

    done = wait_for(lambda: settled(task.id), 20, "the send", worker)

    assert done.status == "error" and len(done.subtasks) == 1
    assert "550" in done.error and "nobody@example.org" in done.error
    row = email_row(email_id)
    assert row.status == "failed" and row.attempts == 1 and "550" in row.last_error
    assert mail.state.messages() == []


def test_a_wrong_smtp_password_is_permanent_and_never_shown(mail, start_role, settings_env):
    env = {**mail.env, "SMTP_PASSWORD": "wrong-pass-5531"}
    settings_env(**env)
    worker = start_role("worker", **env)
    _, task = queue_email("event_archived", "ada@example.org", {**CONTEXT, "course_kept": False})
    done = wait_for(lambda: settled(task.id), 20, "the send", worker)
    assert done.status == "error" and len(done.subtasks) == 1
    assert "SMTP login refused (535)" in done.error
    assert "wrong-pass-5531" not in done.error + worker.output


def test_421_twice_then_accepted_ends_sent_after_the_retries(mail, start_role):
    mail.state.set_temporary_failure(count=2)
    worker = start_role("worker", **mail.env)
    email_id, task = queue_email("event_deployed", "ada@example.org", CONTEXT)

    # The mails queue waits 30 s, then 60 s: each retry is scheduled that far out, then made due now.
    planned = [retry_now(task.id, attempt=1), retry_now(task.id, attempt=2)]
    done = wait_for(lambda: settled(task.id), 60, "the retries", worker)

    # RQ keeps due times in whole seconds, and schedules the retry just after the attempt closed.
    assert 29 <= planned[0] <= 35 and 59 <= planned[1] <= 65, planned

    assert done.status == "success"
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "error"), (2, "error"), (3, "success")]
    assert all("421" in s.error for s in done.subtasks[:2])
    row = email_row(email_id)
    assert row.status == "sent" and row.attempts == 3
    assert len(mail.state.messages()) == 1


def test_cleanup_deletes_only_sent_emails_older_than_the_limit(mail, settings_env):
    from openvle.context import TaskContext
    from openvle.jobs.mail import cleanup_emails

    settings_env(**mail.env, MAIL_MAX_AGE_WEEKS="4")
    now = utcnow()
    rows = {
        "old sent": ("sent", now - dt.timedelta(weeks=5)),
        "new sent": ("sent", now - dt.timedelta(weeks=3)),
        "old failed": ("failed", None),
        "old queued": ("queued", None),
    }
    with session_scope() as session:
        for name, (status, sent_at) in rows.items():
            session.add(Email(kind="event_archived", recipient="a@example.org", subject=name, body_text=".",
                              status=status, sent_at=sent_at, created_at=now - dt.timedelta(weeks=6)))
    task = enqueue_operation("mail.cleanup")

    result = cleanup_emails(TaskContext(task_id=task.id, attempt=1, max_attempts=4, queue="core_periodic"))

    assert result["deleted"] == 1
    with session_scope() as session:
        left = sorted(session.execute(select(Email.subject)).scalars())
    assert left == ["new sent", "old failed", "old queued"]


def test_admins_are_told_when_a_task_fails_for_good(mail, start_role, settings_env):
    env = {**mail.env, "ADMIN_EMAILS": "ops@example.org, lead@example.org"}
    settings_env(**env)
    failing = enqueue_operation("demo.guacamole", {"permanent": True, "error_message": "template 42 is gone"})
    child = enqueue_operation("demo.guacamole", {}, depends_on=[failing])
    worker = start_role("worker", **env)  # after both exist: the child waits on the failure, as in a chain

    wait_for(lambda: len(mail.state.messages()) == 2, 30, "the alerts", worker)

    assert load_task(failing.id).status == "error" and load_task(child.id).status == "cancelled"
    alerts = mail.state.messages()
    assert sorted(m["rcpt_tos"][0] for m in alerts) == ["lead@example.org", "ops@example.org"]
    assert alerts[0]["subject"] == f"[OpenVLE] task {failing.id} (demo.guacamole) failed for good"
    assert "template 42 is gone" in alerts[0]["text"] and "Cancelled because of it: 1" in alerts[0]["text"]
