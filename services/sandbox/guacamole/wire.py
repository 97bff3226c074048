"""What goes back on the wire: JSON bodies the way Jackson writes them, 204s with no body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

JSON_TYPE = "application/json"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    drop: bool = False  # injected fault: close the connection without answering
    delay: float = 0.0  # injected latency, slept outside the state lock


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def ok(payload: Any) -> Reply:
    return Reply(200, dumps(payload), JSON_TYPE)


def no_content() -> Reply:
    return Reply(204)


def error(err: ApiError) -> Reply:
    return Reply(err.status, dumps(err.body()), JSON_TYPE)


def html_not_found(path: str) -> Reply:
    """Outside /api Tomcat answers, not Guacamole: an HTML error page."""
    body = (f"<!doctype html><html lang=\"en\"><head><title>HTTP Status 404 – Not Found</title></head>"
            f"<body><h1>HTTP Status 404 – Not Found</h1><p><b>Message</b> {path}</p></body></html>")
    return Reply(404, body.encode(), "text/html;charset=utf-8")
