"""SMTP delivery with smtplib (SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_TLS, MAIL_FROM).

A 5xx answer (550 unknown recipient, 535 bad login) is permanent: the email fails at once. A 4xx
answer and connection errors are transient: the mails queue retries them on its intervals.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from openvle.errors import PermanentError
from openvle.settings import _Settings, get_settings


class MailTransientError(Exception):
    """The server said try later (4xx) or could not be reached."""


class MailPermanentError(PermanentError):
    """The server refused for good (5xx)."""


def build_message(sender: str, recipient: str, subject: str, text: str, html: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


def _classify(code: int, text: str, what: str) -> Exception:
    detail = f"{what}: {code} {text}".strip()
    return MailPermanentError(detail) if code >= 500 else MailTransientError(detail)


def send(recipient: str, subject: str, text: str, html: str | None, settings: _Settings | None = None) -> None:
    settings = settings or get_settings()
    message = build_message(settings.MAIL_FROM, recipient, subject, text, html)
    context = ssl.create_default_context()
    try:
        if settings.SMTP_TLS == "ssl":
            client = smtplib.SMTP_SSL(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT,
                                      context=context)
        else:
            client = smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT)
        with client:
            if settings.SMTP_TLS == "starttls":
                client.starttls(context=context)
            if settings.SMTP_USER:
                password = settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else ""
                client.login(settings.SMTP_USER, password)
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        raise _classify(code, _decode(text), f"recipient {recipient} refused") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailPermanentError(f"SMTP login refused ({exc.smtp_code}): check SMTP_USER and SMTP_PASSWORD") from None
    except smtplib.SMTPResponseException as exc:  # sender refused, data refused, 421 at any step
        raise _classify(exc.smtp_code, _decode(exc.smtp_error), "SMTP server answered") from None
    except smtplib.SMTPServerDisconnected as exc:
        raise MailTransientError(f"SMTP server closed the connection: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailTransientError(f"cannot reach the SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT}: "
                                 f"{type(exc).__name__}") from None


def _decode(text: bytes | str) -> str:
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
