"""The audit log: every request that changes something (who, when, from where, what, on which object,
the outcome), written by the API's audit middleware and by the CLI's account commands, read by
admins, kept AUDIT_RETENTION_DAYS. It never holds a request's body: no password or token gets in."""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, insert, select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.db.engine import get_engine, session_scope
from openvle.db.models import AuditEntry, utcnow
from openvle.errors import Invalid
from openvle.service.views import AuditView, Page
from openvle.settings import get_settings

log = logging.getLogger("openvle.audit")

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


class AuditFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int | None = Field(None, ge=1, le=2**31 - 1)
    username: str | None = Field(None, max_length=100)
    action: str | None = Field(None, max_length=100, description="e.g. events.deploy, auth.login")
    object_type: str | None = Field(None, max_length=32, description="event, vm, task, template, user, token")
    object_id: str | None = Field(None, max_length=64)
    outcome: int | None = Field(None, ge=100, le=599, description="the HTTP status it got")
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


def entries(actor: Actor, where: AuditFilter, before: int | None = None, limit: int = 100) -> Page[AuditView]:
    authz.require_admin(actor, "read the audit log")
    if not 1 <= limit <= 500:
        raise Invalid(f"limit must be 1 to 500, not {limit}")
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit + 1)
    for name in ("user_id", "username", "action", "object_type", "object_id", "outcome"):
        value = getattr(where, name)
        if value is not None:
            query = query.where(getattr(AuditEntry, name) == value)
    if where.since is not None:
        query = query.where(AuditEntry.at >= _utc(where.since))
    if where.until is not None:
        query = query.where(AuditEntry.at < _utc(where.until))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    with session_scope() as session:
        rows = list(session.execute(query).scalars())
        items = [AuditView.model_validate(r) for r in rows[:limit]]
    return Page[AuditView](items=items, next_before=items[-1].id if len(rows) > limit else None)


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
