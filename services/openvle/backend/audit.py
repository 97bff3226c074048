"""The audit log over HTTP (admins)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS
from openvle.service import audit
from openvle.service.audit import AuditFilter
from openvle.service.views import AuditView, Page

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=ERRORS, dependencies=[Depends(current_actor)])


@router.get("", name="audit.list", response_model=Page[AuditView],
            summary="Admins: who changed what, when, from where, with what outcome; newest first")
def entries(user_id: int | None = Query(None, ge=1, le=2**31 - 1),
            username: str | None = Query(None, max_length=100),
            action: str | None = Query(None, max_length=100, description="e.g. events.deploy, auth.login"),
            object_type: str | None = Query(None, max_length=32, description="event, vm, task, template, user"),
            object_id: str | None = Query(None, max_length=64),
            outcome: int | None = Query(None, ge=100, le=599, description="the HTTP status it got"),
            since: dt.datetime | None = None, until: dt.datetime | None = None,
            before: int | None = Query(None, ge=1, le=2**31 - 1, description="next_before of the previous page"),
            limit: int = Query(100, ge=1, le=500), actor: Actor = Depends(current_actor)) -> Page[AuditView]:
    where = AuditFilter(user_id=user_id, username=username, action=action, object_type=object_type,
                        object_id=object_id, outcome=outcome, since=since, until=until)
    return audit.entries(actor, where, before, limit)
