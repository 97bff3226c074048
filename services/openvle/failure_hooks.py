"""What else happens when a Task fails for good, beyond its record and its cancelled dependents.

The entry points register these at start (cli.py: the admins' alert email, alerts.py), so the Task
runtime calls the domain without importing it: no import loop through mail and enqueue.
"""

from __future__ import annotations

from collections.abc import Callable

FailureHook = Callable[[int, int], None]  # hook(task id, how many dependents were cancelled)

_hooks: list[FailureHook] = []


def on_failed_for_good(hook: FailureHook) -> None:
    """Call `hook` for every Task this process sees fail for good (once, however often registered)."""
    if hook not in _hooks:
        _hooks.append(hook)


def failed_for_good(task_id: int, cancelled: int) -> None:
    for hook in _hooks:
        hook(task_id, cancelled)
