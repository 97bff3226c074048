"""The audit log (admins): who changed what, when, from where and with what outcome, newest first,
with the API's filters (service/audit)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from openvle.accounts.identity import Actor
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.guard import admin_actor
from openvle.backend.pages.inputs import parse, typed
from openvle.backend.pages.render import render
from openvle.service import audit
from openvle.service.audit import AuditFilter

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FILTERS = ("username", "action", "object_type", "object_id", "outcome", "since", "until")
PAGE = 100


@router.get("/audit", name="pages.audit")
def audit_log(request: Request, before: int | None = Query(None, ge=1, le=2**31 - 1),
              actor: Actor = Depends(admin_actor)) -> Response:
    values = typed(request.query_params, FILTERS)
    where, errors = parse(AuditFilter, values)
    page = audit.entries(actor, where, before, PAGE) if where is not None else None
    given = {k: v for k, v in values.items() if v}
    older = f"/audit?{urlencode({**given, 'before': page.next_before})}" if page and page.next_before else None
    return render(request, "admin/audit.html", actor, status=422 if errors else 200, title="Audit log",
                  values=values, errors=errors, entries=page.items if page else None, older=older,
                  newest=f"/audit?{urlencode(given)}" if before else None)
