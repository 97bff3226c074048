"""Email end to end: templates, the mails queue, a real SMTP server (the sandbox mail catcher)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from conftest import no_env, wait_for
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
def catcher(tmp_path_factory):
    # STARTTLS with a certificate made for this run (cryptography, sandbox/tls.py): the client trusts
    # exactly that one through SMTP_VERIFY_SSL, as it would a company CA.
    server = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0, auth=("mailer", "smtp-pass-8812"),
                         tls="starttls", cert_dir=tmp_path_factory.mktemp("smtp-tls"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mail(catcher, settings_env):
    catcher.state.reset()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(catcher.smtp_port), "SMTP_USER": "mailer",
           "SMTP_PASSWORD": "smtp-pass-8812", "SMTP_TLS": "starttls", "SMTP_VERIFY_SSL": catcher.ca_path,
           "MAIL_FROM": "OpenVLE <lab@openvle.test>"}
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
    assert caught["rcpt_tos"] == ["ada@example.org"] and caught["auth_user"] == "mailer" and caught["tls"]
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


def test_a_relay_that_took_the_message_but_never_answered_gets_the_same_message_id_again(mail, start_role):
    """SMTP cannot say whether a message whose 250 never came was taken: the retry sends it again
    (never lost), as the same message to the mailbox: one Message-ID for every try of one email."""
    mail.state.set_slow_reply(seconds=60, count=1)  # kept, then no answer within SMTP_TIMEOUT
    worker = start_role("worker", **mail.env, SMTP_TIMEOUT="1")
    email_id, task = queue_email("event_deployed", "ada@example.org", CONTEXT)

    retry_now(task.id, attempt=1)
    done = wait_for(lambda: settled(task.id), 60, "the retry", worker)

    assert done.status == "success"
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "error"), (2, "success")]
    assert "no answer from the SMTP server" in done.subtasks[0].error and "SMTP_TIMEOUT (1 s)" in done.subtasks[0].error
    first, second = mail.state.messages()
    assert first["message_id"] == second["message_id"]
    assert first["text"] == second["text"] and first["subject"] == second["subject"]
    assert first["message_id"].startswith(f"<openvle.{email_id}.") and first["message_id"].endswith("@openvle.test>")
    assert email_row(email_id).status == "sent"

    other_id, other = queue_email("event_deployed", "bob@example.org", CONTEXT)
    wait_for(lambda: settled(other.id), 20, "another email", worker)
    assert mail.state.messages()[-1]["message_id"] not in (first["message_id"], None)


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


# --- transport security ------------------------------------------------------------------------------


def smtp_settings(server: MailCatcher, **values: str):
    from openvle.settings import Settings

    base = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.smtp_port), "MAIL_FROM": "lab@openvle.test",
            "SMTP_TLS": None, "SMTP_VERIFY_SSL": None, "SMTP_USER": None, "SMTP_PASSWORD": None,
            "SMTP_ALLOW_PLAIN_AUTH": None}
    with no_env(*base):  # what the test environment sets for every test (SMTP_TLS=none) is not a default
        return Settings(**{k: v for k, v in {**base, **values}.items() if v is not None})


@pytest.fixture(scope="module")
def plain_catcher():
    server = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0, auth=("mailer", "plain-pass-2291"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smtps_catcher(tmp_path_factory):
    server = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0, auth=("mailer", "smtps-pass-7730"), tls="ssl",
                         cert_dir=tmp_path_factory.mktemp("smtps-tls"))
    server.start()
    yield server
    server.stop()


def test_starttls_is_the_default_and_the_certificate_is_verified(catcher):
    from openvle.clients import smtp

    catcher.state.reset()
    credentials = {"SMTP_USER": "mailer", "SMTP_PASSWORD": "smtp-pass-8812"}
    untrusted = smtp_settings(catcher, **credentials)  # the system's CAs do not know the catcher's certificate
    assert untrusted.SMTP_TLS == "starttls" and untrusted.SMTP_VERIFY_SSL == "true"
    with pytest.raises(smtp.MailPermanentError, match="not trusted .* set SMTP_VERIFY_SSL to the CA bundle"):
        smtp.send("ada@example.org", "hello", "text", None, settings=untrusted)
    assert catcher.state.snapshot()["stats"].get("auth_failures", 0) == 0 and catcher.state.messages() == []

    smtp.send("ada@example.org", "hello", "text", None,
              settings=smtp_settings(catcher, SMTP_VERIFY_SSL=catcher.ca_path, **credentials))
    (caught,) = catcher.state.messages()
    assert caught["tls"] and caught["auth_user"] == "mailer"


def test_implicit_tls_with_a_ca_bundle(smtps_catcher):
    from openvle.clients import smtp

    smtps_catcher.state.reset()
    smtp.send("ada@example.org", "over SMTPS", "text", None, settings=smtp_settings(
        smtps_catcher, SMTP_TLS="ssl", SMTP_VERIFY_SSL=smtps_catcher.ca_path, SMTP_USER="mailer",
        SMTP_PASSWORD="smtps-pass-7730"))
    (caught,) = smtps_catcher.state.messages()
    assert caught["tls"] and caught["subject"] == "over SMTPS"


def test_the_password_never_goes_over_an_unencrypted_connection_unless_allowed(plain_catcher):
    from openvle.clients import smtp

    plain_catcher.state.reset()
    credentials = {"SMTP_USER": "mailer", "SMTP_PASSWORD": "plain-pass-2291"}
    with pytest.raises(smtp.MailPermanentError, match="does not support what SMTP_TLS/SMTP_USER ask for"):
        smtp.send("ada@example.org", "hello", "text", None, settings=smtp_settings(plain_catcher, **credentials))
    with pytest.raises(smtp.MailPermanentError) as refused:
        smtp.send("ada@example.org", "hello", "text", None,
                  settings=smtp_settings(plain_catcher, SMTP_TLS="none", **credentials))
    assert str(refused.value) == (
        "refusing to send SMTP_PASSWORD over an unencrypted connection (SMTP_TLS=none): set SMTP_TLS=starttls "
        "or ssl, or SMTP_ALLOW_PLAIN_AUTH=true for a relay on a network you trust")
    assert plain_catcher.state.messages() == []

    smtp.send("ada@example.org", "allowed", "text", None, settings=smtp_settings(
        plain_catcher, SMTP_TLS="none", SMTP_ALLOW_PLAIN_AUTH="true", **credentials))
    (caught,) = plain_catcher.state.messages()
    assert caught["auth_user"] == "mailer" and not caught["tls"]


def test_plain_auth_refused_fails_the_email_at_once_naming_the_setting(plain_catcher, settings_env, start_role):
    plain_catcher.state.reset()
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(plain_catcher.smtp_port), "SMTP_TLS": "none",
           "SMTP_USER": "mailer", "SMTP_PASSWORD": "plain-pass-2291"}
    settings_env(**env)
    worker = start_role("worker", **env)
    email_id, task = queue_email("event_deployed", "ada@example.org", CONTEXT)
    done = wait_for(lambda: settled(task.id), 20, "the send", worker)
    assert done.status == "error" and len(done.subtasks) == 1 and "SMTP_ALLOW_PLAIN_AUTH=true" in done.error
    assert email_row(email_id).status == "failed" and plain_catcher.state.messages() == []
    assert "plain-pass-2291" not in done.error + worker.output
