"""/_sandbox/… of the mail catcher (sandbox/control.py)."""

from __future__ import annotations

from typing import Any

from .. import control
from .state import MailState


def handle(state: MailState, method: str, path: str, body: Any) -> tuple[int, Any]:
    return control.handle({
        **control.basics(state),
        ("POST", "reject"): lambda b: {"rejected": state.reject(b["addresses"])},
        ("POST", "temporary-failure"): lambda b: {"temporary_failure": state.set_temporary_failure(**b)},
        ("POST", "slow-reply"): lambda b: {"slow_reply": state.set_slow_reply(**b)},
    }, method, path, body)
