"""Answers the way webservice/rest/locallib.php sends them: json_encode() or Moodle's REST XML, errors with
HTTP 200 too. XML is built from the value's shape (dict -> SINGLE, list -> MULTIPLE), not from a description."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from .errors import WsError

JSON_TYPE = "application/json"
XML_TYPE = "application/xml; charset=utf-8"
_NO_CACHE = {
    "Cache-Control": "private, must-revalidate, pre-check=0, post-check=0, max-age=0",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
    "Pragma": "no-cache",
    "Accept-Ranges": "none",
}
UNAVAILABLE_HTML = (b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    b"</body>\r\n</html>\r\n")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (injected fault)


def php_json(value: Any) -> bytes:
    """json_encode() without flags: non-ASCII as \\uXXXX and "/" escaped."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


def _xml_value(value: Any) -> str:
    if isinstance(value, dict):
        keys = "".join(f'<KEY name="{k}">{_xml_value(v)}</KEY>\n' for k, v in value.items())
        return f"<SINGLE>\n{keys}</SINGLE>\n"
    if isinstance(value, list):
        return "<MULTIPLE>\n" + "".join(_xml_value(v) for v in value) + "</MULTIPLE>\n"
    if value is None:
        return '<VALUE null="null"/>\n'
    if isinstance(value, bool):
        value = int(value)
    return f"<VALUE>{_special(str(value))}</VALUE>\n"


def _headers(fmt: str) -> dict[str, str]:
    if fmt == "json":
        return {"Content-Type": JSON_TYPE, **_NO_CACHE}
    return {"Content-Type": XML_TYPE, "Content-Disposition": 'inline; filename="response.xml"', **_NO_CACHE}


def ok(value: Any, fmt: str, has_return: bool = True) -> Reply:
    if fmt == "json":
        return Reply(200, php_json(value if has_return else None), _headers(fmt))
    inner = _xml_value(value) if has_return else ""
    return Reply(200, f'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n{inner}</RESPONSE>\n'.encode(),
                 _headers(fmt))


def error(err: WsError, fmt: str, debug: bool) -> Reply:
    show_debug = debug and err.debuginfo is not None
    if fmt == "json":
        payload: dict[str, Any] = {"exception": err.exception, "errorcode": err.errorcode, "message": err.message}
        if show_debug:
            payload["debuginfo"] = err.debuginfo
        return Reply(200, php_json(payload), _headers(fmt))
    text = (f'<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class="{err.exception}">\n'
            f"<ERRORCODE>{_special(err.errorcode)}</ERRORCODE>\n<MESSAGE>{_special(err.message)}</MESSAGE>\n")
    if show_debug:
        text += f"<DEBUGINFO>{_special(err.debuginfo or '')}</DEBUGINFO>\n"
    return Reply(200, (text + "</EXCEPTION>\n").encode(), _headers(fmt))


def _special(text: str) -> str:
    """htmlspecialchars(ENT_COMPAT): & < > and double quotes."""
    return escape(text, quote=False).replace('"', "&quot;")
