"""Events for teachers and admins: the list with status and dates; one event's page with the stage
table, its percentage, deploy / archive / retry, participants and dates, and its Task history.
Every read and change goes through service/events.py (who may see and manage what lives there)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.backend.pages.access import PageRoute, page_actor
from openvle.backend.pages.render import render
from openvle.service import events

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/events", name="pages.events")
def event_list(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    authz.require_teacher(actor, "manage events")
    return render(request, "events/index.html", actor, title="Events", events=events.list_events(actor))
