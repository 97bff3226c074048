"""The audit log as admins read it: filters and keyset pages. Written by the API's audit middleware
and the CLI's account commands (auditlog.py), kept AUDIT_RETENTION_DAYS."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry
from openvle.errors import Invalid
from openvle.service.views import AuditView, Page


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
