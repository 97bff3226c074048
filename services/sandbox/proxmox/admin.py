"""/_sandbox/… of the Proxmox simulator (sandbox/control.py)."""

from __future__ import annotations

from typing import Any

from .. import control
from .state import ClusterState


def _remove_vm(state: ClusterState, vmid: str) -> dict:
    if not vmid.isdigit():
        raise ValueError("vmid must be an integer")
    if not state.remove_vm(int(vmid)):
        raise LookupError(f"no VM {vmid}")
    return {"deleted": int(vmid)}


def handle(state: ClusterState, method: str, path: str, body: Any) -> tuple[int, Any]:
    def seed(_: dict) -> Any:
        state.seed_cluster()
        return state.snapshot()

    return control.handle({
        **control.basics(state),
        ("POST", "seed"): seed,
        ("POST", "nodes"): lambda b: state.add_node(**b),
        ("POST", "vms"): lambda b: state.add_vm(**b),
        ("DELETE", "vms/*"): lambda b: _remove_vm(state, b["id"]),
        ("POST", "config"): lambda b: state.configure(**b),
        ("POST", "faults"): lambda b: state.set_faults(**b),
    }, method, path, body)
