"""SERVICE_ROLE dispatch: which part of the system this process becomes."""

from __future__ import annotations

from collections.abc import Callable

from openvle.queues import ROLE_QUEUES
from openvle.settings import Settings


def _backend(settings: Settings) -> int:
    from openvle.backend.server import run

    return run(settings)


def _scheduler(settings: Settings) -> int:
    from openvle.scheduler import run

    return run(settings)


def _sandbox(settings: Settings) -> int:
    from sandbox.runner import run

    return run(settings)


def _worker(role: str) -> Callable[[Settings], int]:
    def start(settings: Settings) -> int:
        from openvle.worker import run

        return run(role, settings)

    return start


ROLES: dict[str, Callable[[Settings], int]] = {
    "backend": _backend,
    "scheduler": _scheduler,
    **{role: _worker(role) for role in ROLE_QUEUES},
    "sandbox": _sandbox,
}


class UnknownRole(Exception):
    def __init__(self, role: str | None):
        valid = ", ".join(ROLES)
        if role:
            super().__init__(f"unknown SERVICE_ROLE {role!r}: choose one of {valid}")
        else:
            super().__init__(f"SERVICE_ROLE is not set: choose one of {valid}")


def resolve(role: str | None) -> Callable[[Settings], int]:
    if role not in ROLES:
        raise UnknownRole(role)
    return ROLES[role]
