"""SMTP delivery with smtplib (SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_TLS, SMTP_VERIFY_SSL,
SMTP_ALLOW_PLAIN_AUTH, MAIL_FROM).

TLS by default (STARTTLS), the server's certificate verified; the password is never sent over an
unencrypted connection unless SMTP_ALLOW_PLAIN_AUTH says so.

A 5xx answer (550 unknown recipient, 535 bad login) is permanent: the email fails at once. A 4xx
answer and connection errors are transient: the mails queue retries them on its intervals (there
is no retry inside the call). Messages are masked as every outside call's are (clients/outside.py).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from openvle.clients.outside import OutsideError, PermanentOutsideError, TransientError
from openvle.clients.tls import client_context, untrusted_message
from openvle.settings import Settings, get_settings


class MailError(OutsideError):
    system = "SMTP"


class MailTransientError(MailError, TransientError):
    """The server said try later (4xx) or could not be reached."""


class MailPermanentError(MailError, PermanentOutsideError):
    """The server refused for good (5xx)."""


def sender_domain(sender: str) -> str | None:
    return sender.rpartition("@")[2].strip(">") or None


def build_message(sender: str, recipient: str, subject: str, text: str, html: str | None,
                  message_id: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id or make_msgid(domain=sender_domain(sender))
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def _classify(code: int, text: str, what: str) -> Exception:
    detail = f"{what}: {code} {text}".strip()
    return MailPermanentError(detail) if code >= 500 else MailTransientError(detail)


def send(recipient: str, subject: str, text: str, html: str | None, settings: Settings | None = None,
         message_id: str | None = None) -> None:
    """Deliver one message. Give a `message_id` that stays the same for every try of one email: a try
    whose answer was lost may have been delivered, and a copy with the same Message-ID is one message
    to the mailboxes and clients that fold duplicates."""
    settings = settings or get_settings()
    if settings.SMTP_USER and settings.SMTP_TLS == "none" and not settings.SMTP_ALLOW_PLAIN_AUTH:
        raise MailPermanentError(
            "refusing to send SMTP_PASSWORD over an unencrypted connection (SMTP_TLS=none): set SMTP_TLS=starttls "
            "or ssl, or SMTP_ALLOW_PLAIN_AUTH=true for a relay on a network you trust")
    message = build_message(settings.MAIL_FROM, recipient, subject, text, html, message_id)
    context = client_context(settings.verify("SMTP_VERIFY_SSL")) if settings.SMTP_TLS != "none" else None
    try:
        if settings.SMTP_TLS == "ssl":
            client = smtplib.SMTP_SSL(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT,
                                      context=context)
        else:
            client = smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT)
        with client:
            if settings.SMTP_TLS == "starttls":
                client.starttls(context=context)  # smtplib says EHLO again after it, as RFC 3207 wants
            if settings.SMTP_USER:
                password = settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else ""
                client.login(settings.SMTP_USER, password)
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        raise _classify(code, _decode(text), f"recipient {recipient} refused") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailPermanentError(f"SMTP login refused ({exc.smtp_code}): check SMTP_USER and SMTP_PASSWORD") from None
    except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or no AUTH offered: retrying changes nothing
        raise MailPermanentError(
            f"the SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT} does not support what SMTP_TLS/SMTP_USER ask "
            f"for ({exc}): use the port and SMTP_TLS the relay documents (starttls: 587 or 25, ssl: 465)") from None
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, 421 at any step
        raise _classify(exc.smtp_code, _decode(exc.smtp_error), "SMTP server answered") from None
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib's word for a read that timed out (over TLS)
            raise _no_answer(settings) from None
        raise MailTransientError(f"SMTP server closed the connection: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise MailPermanentError(untrusted_message("the SMTP server", f"{settings.SMTP_HOST}:{settings.SMTP_PORT}",
                                                   "SMTP_VERIFY_SSL", exc)) from None
    except TimeoutError:
        raise _no_answer(settings) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailTransientError(f"cannot reach the SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT}: "
                                 f"{type(exc).__name__}") from None


def _no_answer(settings: Settings) -> MailTransientError:
    # after DATA too: the message may have been taken, so the retry sends it with the same Message-ID
    return MailTransientError(f"no answer from the SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT} within "
                              f"SMTP_TIMEOUT ({settings.SMTP_TIMEOUT} s)")


def _decode(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
