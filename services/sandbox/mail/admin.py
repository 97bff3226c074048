"""/_sandbox/…: JSON control endpoints for tests and development (no auth)."""

from __future__ import annotations

from typing import Any

from .state import MailState


def handle(state: MailState, method: str, path: str, body: Any) -> tuple[int, Any]:
    """(HTTP status, JSON payload)."""
    parts = [p for p in path.split("/") if p][1:]  # drop "_sandbox"
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return 400, {"error": "the body must be a JSON object"}
    try:
        if method == "GET" and parts == ["state"]:
            return 200, state.snapshot()
        if method == "POST" and parts == ["reset"]:
            state.reset()
            return 200, state.snapshot()
        if method == "POST" and parts == ["reject"]:
            if "addresses" not in body:
                return 400, {"error": "expected {\"addresses\": [...]}"}
            return 200, {"rejected": state.reject(body["addresses"])}
        if method == "POST" and parts == ["temporary-failure"]:
            unknown = set(body) - {"count", "seconds"}
            if unknown:
                return 400, {"error": f"unknown fields: {', '.join(sorted(unknown))}"}
            return 200, {"temporary_failure": state.set_temporary_failure(**body)}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no admin endpoint {method} {path}"}
