"""{prefix}/_sandbox/…: JSON control endpoints for tests and development (no auth, never faulted)."""

from __future__ import annotations

from typing import Any

from .state import GuacamoleState


def handle(state: GuacamoleState, method: str, path: str, body: Any) -> tuple[int, Any]:
    """(HTTP status, JSON payload) for `path` below /_sandbox."""
    parts = [p for p in path.split("/") if p]
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
        if method == "POST" and parts == ["faults"]:
            return 200, state.set_faults(**body)
        if method == "POST" and parts == ["expire-tokens"]:
            return 200, {"expired": state.expire_tokens()}
        if method == "POST" and parts == ["config"]:
            return 200, state.configure(**body)
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no admin endpoint {method} /_sandbox/{'/'.join(parts)}"}
