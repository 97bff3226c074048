"""/_sandbox/… of the Moodle simulator (sandbox/control.py)."""

from __future__ import annotations

from typing import Any

from .. import control
from .state import MoodleState


def handle(state: MoodleState, method: str, path: str, body: Any) -> tuple[int, Any]:
    def seed(_: dict) -> Any:
        state.seed()
        return state.snapshot()

    def enrol(b: dict) -> Any:
        state.enrol(**b)
        return state.snapshot()

    return control.handle({
        **control.basics(state),
        ("POST", "seed"): seed,
        ("POST", "config"): lambda b: state.configure(**b),
        ("POST", "faults"): lambda b: state.set_faults(**b),
        ("POST", "categories"): lambda b: {"id": state.add_category(**b)},
        ("POST", "courses"): lambda b: {"id": state.add_course(**b)},
        ("POST", "users"): lambda b: {"id": state.add_user(**b)},
        ("POST", "enrolments"): enrol,
    }, method, path, body)
