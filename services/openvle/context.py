"""What a job function gets besides its params: a handle to report progress and log lines.

Progress and log lines are written at once, in their own short transactions, so a page shows them
while the job still runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from openvle import records
from openvle.db.engine import get_engine

log = logging.getLogger("openvle.job")


@dataclass(frozen=True)
class CheckBack:
    """Returned by a job that is waiting on something outside (a Proxmox task, a free clone slot):
    the same attempt is called again after `seconds`, and the worker runs other jobs meanwhile."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class TaskContext:
    task_id: int
    attempt: int
    max_attempts: int
    queue: str
    checks: int = 0  # how many times this attempt was already called back (CheckBack)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def check_back(self, seconds: float, reason: str) -> CheckBack:
        """`return ctx.check_back(5, "clone running")`: run this attempt again in `seconds`."""
        return CheckBack(seconds, reason)

    def progress(self, percent: int, message: str | None = None) -> None:
        """Report how far the job is (0-100) and, optionally, what it is doing."""
        percent = max(0, min(100, int(percent)))
        with get_engine().begin() as conn:
            records.set_progress(conn, self.task_id, percent, message)
        if message:
            log.info("%d%% %s", percent, message)

    def log(self, message: str, level: str = "info") -> None:
        """Keep a line with the Task (shown with it) and write it to the process log."""
        level = level.lower()
        numeric = logging.getLevelName(level.upper())
        log.log(numeric if isinstance(numeric, int) else logging.INFO, "%s", message)
        from openvle.logs import mask
        from openvle.settings import get_settings

        with get_engine().begin() as conn:
            records.add_log(conn, self.task_id, self.attempt, level, mask(message, get_settings().secrets()))
