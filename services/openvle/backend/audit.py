"""The audit log over HTTP (admins)."""

from __future__ import annotations

from typing import Annotated

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
def entries(where: Annotated[AuditFilter, Query()],
            before: int | None = Query(None, ge=1, le=2**31 - 1, description="next_before of the previous page"),
            limit: int = Query(100, ge=1, le=500), actor: Actor = Depends(current_actor)) -> Page[AuditView]:
    return audit.entries(actor, where, before, limit)
