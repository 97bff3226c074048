"""MIME parsing of a caught message into the JSON-able dict the catcher stores and serves."""

from __future__ import annotations

import datetime as dt
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any


def _raw(msg: EmailMessage, name: str) -> list[str]:
    return [str(value) for key, value in msg.raw_items() if key.lower() == name.lower()]


def _header(msg: EmailMessage, name: str) -> str | None:
    try:
        value = msg.get(name)
    except Exception:  # a header the default policy cannot parse: its raw text instead
        return next(iter(_raw(msg, name)), None)
    return None if value is None else str(value)


def _addresses(msg: EmailMessage, name: str) -> list[str]:
    try:
        values = [str(v) for v in msg.get_all(name, failobj=[])]
    except Exception:
        values = _raw(msg, name)
    return [addr for _, addr in getaddresses(values) if addr]


def _date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat()


def _content(part: EmailMessage | None) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def parse_message(raw: bytes, mail_from: str, rcpt_tos: list[str]) -> dict[str, Any]:
    """Fields of one message; `text`/`html` are the message's plain-text and HTML bodies (None when absent),
    `attachments` counts every other leaf part. `headers` maps each header name to its (decoded) value; a
    repeated header (Received) keeps its first value, `raw` has them all."""
    msg = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))  # bodies with \n, as sent
    assert isinstance(msg, EmailMessage)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    bodies = {id(p) for p in (text_part, html_part) if p is not None}
    attachments = sum(1 for part in msg.walk() if not part.is_multipart() and id(part) not in bodies)
    headers: dict[str, str] = {}
    for name in msg.keys():
        if name not in headers:
            headers[name] = _header(msg, name) or ""
    return {
        "mail_from": mail_from,
        "rcpt_tos": list(rcpt_tos),
        "subject": _header(msg, "Subject") or "",
        "from": _header(msg, "From") or "",
        "to": _addresses(msg, "To"),
        "cc": _addresses(msg, "Cc"),
        "date": _date(_header(msg, "Date")),
        "message_id": _header(msg, "Message-ID"),
        "text": _content(text_part),
        "html": _content(html_part),
        "attachments": attachments,
        "headers": headers,
        "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "size": len(raw),
        "raw": raw.decode("utf-8", "replace"),
    }
