"""/_sandbox/…: the JSON control endpoints of every simulator, for tests and development (no auth,
never faulted). Each simulator names its endpoints; this parses, dispatches and answers errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# body -> JSON payload. TypeError/ValueError/KeyError mean a bad request (400), LookupError 404.
Endpoint = Callable[[dict[str, Any]], Any]


def basics(state: Any) -> dict[tuple[str, str], Endpoint]:
    """What every simulator's state answers: its snapshot, and a reset to the empty state."""

    def reset(_: dict) -> Any:
        state.reset()
        return state.snapshot()

    return {("GET", "state"): lambda _: state.snapshot(), ("POST", "reset"): reset}


def handle(endpoints: dict[tuple[str, str], Endpoint], method: str, path: str, body: Any) -> tuple[int, Any]:
    """(HTTP status, JSON payload) for `path`, with or without its leading /_sandbox. A path of
    two segments may match an endpoint named "first/*", which gets the second as `body["id"]`."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["_sandbox"]:
        parts = parts[1:]
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return 400, {"error": "the body must be a JSON object"}
    endpoint = endpoints.get((method, "/".join(parts)))
    if endpoint is None and len(parts) == 2:
        endpoint = endpoints.get((method, f"{parts[0]}/*"))
        body = {**body, "id": parts[1]}
    if endpoint is None:
        return 404, {"error": f"no admin endpoint {method} /_sandbox/{'/'.join(parts)}"}
    try:
        return 200, endpoint(body)
    except KeyError as exc:
        return 400, {"error": f"missing field {exc}"}
    except LookupError as exc:
        return 404, {"error": str(exc)}
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
