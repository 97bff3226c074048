"""The system's own upkeep, run by the scheduler on core_periodic."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from openvle.connections import get_redis
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskStatus, utcnow
from openvle.settings import get_settings

HEARTBEAT_KEY = "openvle:scheduler:heartbeat"


def heartbeat(ctx: TaskContext) -> dict:
    """Proves scheduler → queue → worker → DB works; /api/monitoring shows when it last ran."""
    at = utcnow().isoformat() + "Z"
    get_redis().set(HEARTBEAT_KEY, at)
    return {"at": at}


def reconcile_tasks(ctx: TaskContext) -> dict:
    from openvle.lab_events import release_stuck
    from openvle.reconcile import reconcile

    report = reconcile()
    repaired = {k: v for k, v in report.as_dict().items() if k != "checked" and v}
    released = release_stuck()  # events whose deploy/archive ended without finishing them
    if released:
        repaired["stuck_events"] = released
    if repaired:
        ctx.log(f"repaired {repaired}", level="warning")
    return {**report.as_dict(), "stuck_events": released}


def purge_tasks(ctx: TaskContext) -> dict:
    """Delete finished Tasks (and their attempts and logs) older than TASK_RETENTION_DAYS."""
    cutoff = utcnow() - dt.timedelta(days=get_settings().TASK_RETENTION_DAYS)
    deleted = 0
    while True:  # in slices, so a big backlog never holds one long lock
        with session_scope() as session:
            ids = session.execute(
                select(Task.id).where(Task.status.in_(TaskStatus.FINAL), Task.finished_at < cutoff).limit(1000)
            ).scalars().all()
            if not ids:
                break
            session.execute(delete(Task).where(Task.id.in_(ids)))
            deleted += len(ids)
    return {"deleted": deleted, "older_than": cutoff.isoformat() + "Z"}


def purge_audit(ctx: TaskContext) -> dict:
    """Audit entries older than AUDIT_RETENTION_DAYS, browser sessions and one-time links that expired."""
    from openvle import auditlog
    from openvle.accounts import links, sessions

    return {"audit_entries": auditlog.purge(), "sessions": sessions.purge_expired(), "links": links.purge_expired()}
