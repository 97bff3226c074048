"""Encoding of answers the way pve-http-server sends them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

JSON_TYPE = "application/json;charset=UTF-8"


@dataclass
class Reply:
    status: int
    reason: str
    body: bytes = b""
    delay: float = 0.0  # seconds to hold the answer back (failed logins)
    drop: bool = False  # close the connection without answering (injected fault)


@dataclass
class WithAttribs:
    """A result plus top-level attributes next to `data` (the task log's `total`)."""

    data: Any
    attribs: dict[str, Any]


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def ok(result: Any) -> Reply:
    if isinstance(result, WithAttribs):
        return Reply(200, "OK", dumps({"data": result.data, **result.attribs}))
    return Reply(200, "OK", dumps({"data": result}))


def reason_phrase(message: str) -> str:
    """Only the first line of a message fits in the status line (AnyEvent.pm response())."""
    line = message.strip("\n").split("\n", 1)[0].replace("\r", " ")
    return line.encode("latin-1", "replace").decode("latin-1")


def error(err: ApiError) -> Reply:
    reason = reason_phrase(err.message)
    if not err.body:
        return Reply(err.status, reason)
    payload: dict[str, Any] = {"data": None}
    if err.errors is not None:
        payload["errors"] = err.errors
    payload["message"] = err.message
    return Reply(err.status, reason, dumps(payload))
