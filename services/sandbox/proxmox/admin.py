"""/_sandbox/…: JSON control endpoints for tests and development (no auth, never faulted)."""

from __future__ import annotations

from typing import Any

from .state import ClusterState


def handle(state: ClusterState, method: str, path: str, body: Any) -> tuple[int, Any]:
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
            state.seed_cluster()
            return 200, state.snapshot()
        if method == "POST" and parts == ["nodes"]:
            return 200, state.add_node(**body)
        if method == "POST" and parts == ["vms"]:
            return 200, state.add_vm(**body)
        if method == "DELETE" and len(parts) == 2 and parts[0] == "vms":
            if not parts[1].isdigit():
                return 400, {"error": "vmid must be an integer"}
            if not state.remove_vm(int(parts[1])):
                return 404, {"error": f"no VM {parts[1]}"}
            return 200, {"deleted": int(parts[1])}
        if method == "POST" and parts == ["config"]:
            return 200, state.configure(**body)
        if method == "POST" and parts == ["faults"]:
            return 200, state.set_faults(**body)
    except (TypeError, ValueError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no admin endpoint {method} {path}"}
