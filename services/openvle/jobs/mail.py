"""Email delivery (mails queue) and the daily cleanup of sent emails (core_periodic)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, update

from openvle.clients import smtp
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Email, EmailStatus, utcnow
from openvle.errors import PermanentError
from openvle.logs import mask
from openvle.mail import message_id
from openvle.settings import get_settings


def send_email(ctx: TaskContext, email_id: int) -> dict:
    return deliver(ctx, email_id)


def deliver(ctx: TaskContext, email_id: int, fill: Callable[[str], str] | None = None) -> dict:
    """Send a stored email once; record the outcome on its row (failed when no retry is left).

    `fill` completes the text just before sending: what must not be stored (a one-time link) is
    put in then, so the row keeps only a placeholder."""
    with session_scope() as session:
        email = session.get(Email, email_id)
        if email is None:
            raise PermanentError(f"email {email_id} does not exist")
        if email.status == EmailStatus.SENT:  # a retry after the send went through
            return {"email_id": email_id, "already_sent": True}
        recipient, subject, text, html = email.recipient, email.subject, email.body_text, email.body_html
        same_id = message_id(email)
        if email.attempts < ctx.attempt - 1:  # a try before ended with no outcome recorded (killed)
            ctx.log("sending again with the same Message-ID: the lost attempt may have delivered it")
    if fill is not None:
        text, html = fill(text), fill(html) if html else html
    try:
        smtp.send(recipient, subject, text, html, message_id=same_id)
    except (smtp.MailTransientError, smtp.MailPermanentError) as exc:
        final = isinstance(exc, smtp.MailPermanentError) or ctx.is_last_attempt
        _record(email_id, EmailStatus.FAILED if final else EmailStatus.QUEUED, str(exc))
        raise
    _record(email_id, EmailStatus.SENT, None, sent_at=utcnow())
    ctx.log(f"sent to {recipient}")
    return {"email_id": email_id, "recipient": recipient}


def _record(email_id: int, status: str, error: str | None, **extra) -> None:
    with session_scope() as session:
        session.execute(
            update(Email)
            .where(Email.id == email_id)
            .values(status=status, attempts=Email.attempts + 1,
                    last_error=mask(error, get_settings().secrets()) if error else None, **extra)
        )


def cleanup_emails(ctx: TaskContext) -> dict:
    """Delete sent emails older than MAIL_MAX_AGE_WEEKS; queued and failed ones stay (someone may look)."""
    cutoff = utcnow() - dt.timedelta(weeks=get_settings().MAIL_MAX_AGE_WEEKS)
    with session_scope() as session:
        deleted = session.execute(
            delete(Email).where(Email.status == EmailStatus.SENT, Email.sent_at < cutoff)
        ).rowcount
    return {"deleted": deleted, "older_than": cutoff.isoformat() + "Z"}
