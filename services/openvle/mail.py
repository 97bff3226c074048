"""Emails: rendered from templates and stored as a row (`store_email`), delivered by a Task on `mails`.

Templates live in mail_templates/<kind>.subject.txt, <kind>.txt and <kind>.html (Jinja2, HTML
autoescaped). A kind without templates is a PermanentError: no retry can make it exist.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any

import jinja2
from sqlalchemy.orm import Session

from openvle.clients.smtp import sender_domain
from openvle.db.engine import session_scope
from openvle.db.models import Email
from openvle.enqueue import enqueue_operation
from openvle.errors import PermanentError
from openvle.settings import get_settings

KINDS = ("event_deployed", "event_course", "event_teacher", "event_starts_soon", "event_archived", "task_failed",
         "event_stuck", "event_capacity", "account_invite", "password_reset")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("openvle", "mail_templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug to see, not an empty line in a mail
        keep_trailing_newline=True,
    )


def render(kind: str, context: dict[str, Any]) -> tuple[str, str, str | None]:
    """(subject, text, html) of the email `kind` for `context`."""
    environment = _environment()
    try:
        subject = environment.get_template(f"{kind}.subject.txt").render(context).strip()
        text = environment.get_template(f"{kind}.txt").render(context)
    except jinja2.TemplateNotFound:
        raise PermanentError(f"no email template {kind!r}; known: {', '.join(KINDS)}") from None
    except jinja2.UndefinedError as exc:
        raise PermanentError(f"email template {kind!r} needs a value it was not given: {exc}") from None
    try:
        html = environment.get_template(f"{kind}.html").render(context)
    except jinja2.TemplateNotFound:
        html = None
    return subject, text, html


def store_email(session: Session, kind: str, recipient: str, context: dict[str, Any], *, user_id: int | None = None,
                event_id: int | None = None, task_id: int | None = None) -> int:
    """Render the email `kind` and add its row to `session`; its id. The one way an email is made:
    `queue_email` and the jobs that send their own (jobs/lab_events.py, jobs/accounts.py) all store
    through here, and all deliver through jobs/mail.deliver. In the caller's session, so the row
    and what finds it again on a retry (a participant's column, say) commit together."""
    subject, text, html = render(kind, context)
    email = Email(kind=kind, recipient=recipient, subject=subject, body_text=text, body_html=html,
                  user_id=user_id, event_id=event_id, task_id=task_id)
    session.add(email)
    session.flush()
    return email.id


def queue_email(kind: str, recipient: str, context: dict[str, Any], *, user_id: int | None = None,
                event_id: int | None = None, requested_by: str | None = None, depends_on=()) -> tuple[int, Any]:
    """Render and store the email, then queue its delivery (`mail.send`). Returns (email id, Task)."""
    with session_scope() as session:
        email_id = store_email(session, kind, recipient, context, user_id=user_id, event_id=event_id)
    task = enqueue_operation("mail.send", {"email_id": email_id}, target=f"email:{email_id}",
                             requested_by=requested_by, depends_on=depends_on)
    with session_scope() as session:
        session.get(Email, email_id).task_id = task.id
    return email_id, task


def message_id(email: Email) -> str:
    """The Message-ID every try of this email is sent with.

    SMTP cannot say whether a message whose 250 never arrived (the worker killed, the connection cut
    after DATA) was taken, so a retry sends it again: at least once, never lost. Sent with the same
    Message-ID, the copy is one message to mail stores and clients that fold duplicates. Keyed by
    SECRET_KEY so two installations sending from one domain never share an id, and so it says nothing."""
    settings = get_settings()
    key = settings.SECRET_KEY.get_secret_value().encode() if settings.SECRET_KEY else b""
    created = email.created_at.isoformat() if email.created_at else ""
    digest = hmac.new(key, f"openvle email {email.id} {created}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"<openvle.{email.id}.{digest}@{sender_domain(settings.MAIL_FROM) or 'openvle.invalid'}>"
