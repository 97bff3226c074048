"""The audit log's writes: one row per request that changes something, and the daily purge of rows
older than AUDIT_RETENTION_DAYS. It never holds a request's body: no password or token gets in."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, insert, select

from openvle.accounts.identity import Actor
from openvle.db.engine import get_engine, session_scope
from openvle.db.models import AuditEntry, utcnow
from openvle.settings import get_settings

_INSERT = insert(AuditEntry.__table__)


def record(*, actor: Actor | None, address: str | None, method: str, path: str, action: str, outcome: int,
           object_type: str | None = None, object_id: str | int | None = None, detail: str | None = None,
           user_id: int | None = None, username: str | None = None) -> None:
    values = dict(
        at=utcnow(), user_id=actor.user_id if actor else user_id, username=actor.username if actor else username,
        address=(address or None) and address[:64], via=actor.via if actor else "anonymous", method=method[:8],
        path=path[:300], action=action[:100], object_type=object_type, outcome=outcome,
        object_id=str(object_id)[:64] if object_id is not None else None, detail=detail[:1000] if detail else None)
    with get_engine().begin() as conn:
        conn.execute(_INSERT, values)


def purge() -> int:
    """Delete entries older than AUDIT_RETENTION_DAYS, in slices (no long lock)."""
    cutoff = utcnow() - dt.timedelta(days=get_settings().AUDIT_RETENTION_DAYS)
    deleted = 0
    while True:
        with session_scope() as session:
            ids = session.execute(select(AuditEntry.id).where(AuditEntry.at < cutoff).limit(1000)).scalars().all()
            if not ids:
                return deleted
            session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
            deleted += len(ids)
