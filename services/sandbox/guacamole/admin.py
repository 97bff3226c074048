"""{prefix}/_sandbox/… of the Guacamole simulator (sandbox/control.py)."""

from __future__ import annotations

from typing import Any

from .. import control
from .state import GuacamoleState


def handle(state: GuacamoleState, method: str, path: str, body: Any) -> tuple[int, Any]:
    return control.handle({
        **control.basics(state),
        ("POST", "faults"): lambda b: state.set_faults(**b),
        ("POST", "expire-tokens"): lambda _: {"expired": state.expire_tokens()},
        ("POST", "config"): lambda b: state.configure(**b),
    }, method, path, body)
