"""Tell the admins (ADMIN_EMAILS) when a Task fails for good, so nothing fails silently."""

from __future__ import annotations

import logging

from openvle import failure_hooks
from openvle.db.engine import session_scope
from openvle.db.models import Task
from openvle.settings import get_settings

log = logging.getLogger("openvle.alerts")


def register() -> None:
    """Alert on every Task this process sees fail for good; each entry point calls it at start."""
    failure_hooks.on_failed_for_good(task_failed)


def task_failed(task_id: int, cancelled: int) -> None:
    admins = get_settings().admin_emails
    if not admins:
        return
    from openvle.mail import queue_email

    try:
        with session_scope() as session:
            task = session.get(Task, task_id)
            if task is None or task.operation.startswith("mail."):
                return  # a failed alert email must not alert about itself, forever
            context = {"task": {k: getattr(task, k) for k in ("id", "operation", "target", "queue", "attempts",
                                                                "error")}, "cancelled": cancelled}
        for admin in admins:
            queue_email("task_failed", admin, context, requested_by="alerts")
    except Exception:  # the failure itself is recorded; a broken alert must not hide it
        log.exception("could not queue the failure alert for task %s", task_id)


def event_stuck(event_id: int, name: str, reason: str) -> None:
    """An event's deploy or archive ended without finishing it: the event was set to failed."""
    admins = get_settings().admin_emails
    if not admins:
        return
    from openvle.mail import queue_email

    try:
        for admin in admins:
            queue_email("event_stuck", admin, {"event": {"id": event_id, "name": name}, "reason": reason},
                        event_id=event_id, requested_by="alerts")
    except Exception:  # the event's state says it; a broken alert must not hide it
        log.exception("could not queue the alert for stuck event %s", event_id)


def event_does_not_fit(event_id: int, name: str, start: str, teachers: list[str], fit) -> int:
    """A scheduled event stopped fitting the cluster (capacity.py): its teachers and the admins are
    told once (the lifecycle remembers it on the event). Returns how many emails were queued."""
    from openvle.mail import queue_email

    recipients = list(dict.fromkeys([*teachers, *get_settings().admin_emails]))
    context = {"event": {"id": event_id, "name": name, "start": start}, "summary": fit.summary,
               "window_start": f"{fit.window_start:%Y-%m-%d %H:%M} UTC",
               "window_end": f"{fit.window_end:%Y-%m-%d %H:%M} UTC"}
    for recipient in recipients:
        queue_email("event_capacity", recipient, context, event_id=event_id, requested_by="lifecycle")
    return len(recipients)
