"""The queue table and the role → queues map: the one place both are defined.

Retry semantics users are promised: after the k-th failed attempt the job waits the k-th interval of
its queue, and the last interval repeats until the retries are used up. RQ's `Retry` reads an
interval list from its end, so `retry_intervals()` builds a list exactly `max_retries` long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

FIXED_RETRIES = 3  # pve_periodic and core_periodic, whatever WORKER_MAX_RETRY says

HOUR = 3600
DAY = 24 * HOUR


@dataclass(frozen=True)
class QueueSpec:
    name: str
    purpose: str
    intervals: tuple[int, ...]
    fixed_retries: int | None  # None: WORKER_MAX_RETRY
    timeout: int  # seconds a job may run before RQ kills it
    result_ttl: int  # seconds a finished job stays in Redis (the DB keeps the history)
    failure_ttl: int  # seconds a failed job stays in RQ's failed registry


QUEUE_TABLE: tuple[QueueSpec, ...] = (
    QueueSpec("pve_vm_clone", "VM cloning and deletion", (10, 30, 60), None, 2 * HOUR, HOUR, 7 * DAY),
    QueueSpec("pve_vm_actions", "start, stop, reset, migrate", (5, 10, 15), None, 30 * 60, HOUR, 7 * DAY),
    QueueSpec("pve_periodic", "Proxmox polling (node info sync)", (5, 10, 15), FIXED_RETRIES, 5 * 60, 10 * 60, DAY),
    QueueSpec("mails", "email delivery", (30, 60, 120), None, 2 * 60, HOUR, 7 * DAY),
    QueueSpec("guacamole", "Guacamole users, connections, sharing profiles", (10, 30, 60), None, 5 * 60, HOUR, 7 * DAY),
    QueueSpec("moodle", "Moodle courses and enrolments", (10, 30, 60), None, HOUR, HOUR, 7 * DAY),
    QueueSpec(
        "core_periodic", "event lifecycle, email cleanup, deploy/archive of events",
        (5, 10, 15), FIXED_RETRIES, 30 * 60, HOUR, 7 * DAY,
    ),
)

QUEUES: dict[str, QueueSpec] = {spec.name: spec for spec in QUEUE_TABLE}
QUEUE_NAMES: tuple[str, ...] = tuple(QUEUES)

# Each worker role listens on exactly these queues, in this order (RQ dequeues by strict priority).
ROLE_QUEUES: dict[str, tuple[str, ...]] = {
    "worker": ("pve_vm_actions", "core_periodic", "guacamole", "mails", "moodle"),
    "worker-vm-clone": ("pve_vm_clone",),
    "worker-periodic": ("pve_periodic",),
    "worker-all": QUEUE_NAMES,
}


@dataclass(frozen=True)
class QueuePolicy:
    """A queue's spec resolved against the settings: what enqueue actually uses."""

    name: str
    max_retries: int
    intervals: tuple[int, ...]  # one per retry, in the order users see them
    timeout: int
    result_ttl: int
    failure_ttl: int

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    def wait_after(self, attempt: int) -> int | None:
        """Seconds before the next attempt once `attempt` (1-based) failed; None when none is left."""
        if attempt > self.max_retries:
            return None
        return self.intervals[attempt - 1]


def retry_intervals(intervals: tuple[int, ...], max_retries: int) -> tuple[int, ...]:
    """The k-th interval after the k-th failure, the last repeating: (10,30,60) × 5 → 10,30,60,60,60."""
    return tuple(intervals[min(k, len(intervals) - 1)] for k in range(max_retries))


class QueueSettings(Protocol):
    """What a policy reads of the settings (settings.py, which imports this table to make its fields)."""

    WORKER_MAX_RETRY: int

    def queue_override(self, queue: str, what: str) -> int | None: ...


def policy(queue: str, settings: QueueSettings) -> QueuePolicy:
    spec = QUEUES[queue]
    max_retries = spec.fixed_retries if spec.fixed_retries is not None else settings.WORKER_MAX_RETRY
    return QueuePolicy(
        name=spec.name,
        max_retries=max_retries,
        intervals=retry_intervals(spec.intervals, max_retries),
        timeout=settings.queue_override(queue, "TIMEOUT") or spec.timeout,
        result_ttl=_override(settings.queue_override(queue, "RESULT_TTL"), spec.result_ttl),
        failure_ttl=settings.queue_override(queue, "FAILURE_TTL") or spec.failure_ttl,
    )


def _override(value: int | None, default: int) -> int:
    return default if value is None else value
