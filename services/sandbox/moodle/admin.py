"""/_sandbox/…: JSON control endpoints for tests and development (no auth, never faulted)."""

from __future__ import annotations

from typing import Any

from .state import MoodleState


def handle(state: MoodleState, method: str, path: str, body: Any) -> tuple[int, Any]:
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
        if method == "POST" and parts == ["seed"]:
            state.seed()
            return 200, state.snapshot()
        if method == "POST" and parts == ["config"]:
            return 200, state.configure(**body)
        if method == "POST" and parts == ["faults"]:
            return 200, state.set_faults(**body)
        if method == "POST" and parts == ["categories"]:
            return 200, {"id": state.add_category(**body)}
        if method == "POST" and parts == ["courses"]:
            return 200, {"id": state.add_course(**body)}
        if method == "POST" and parts == ["users"]:
            return 200, {"id": state.add_user(**body)}
        if method == "POST" and parts == ["enrolments"]:
            state.enrol(**body)
            return 200, state.snapshot()
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no admin endpoint {method} {path}"}
