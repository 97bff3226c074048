"""Queues and workers (admins): what rq-dashboard and Flower show operators, from service/monitoring
(the API's /api/queues, /api/workers, /api/scheduler): per queue the count in each RQ registry and
the oldest waiting job's age; workers by role with the job and Task each runs; each scheduler's
heartbeat and the next run of every periodic job. The page keeps itself current."""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvle.accounts.identity import Actor
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.guard import admin_actor
from openvle.backend.pages.render import poll_answer, polled, render
from openvle.service import monitoring

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def age(seconds: float | None) -> str:
    """How long a job has waited, as people say it."""
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _box(request: Request, actor: Actor):
    workers = monitoring.workers(actor)
    roles = [(role, list(group)) for role, group in groupby(sorted(workers, key=lambda w: (w.role, w.name)),
                                                             key=lambda w: w.role)]
    return polled(request, "admin/_queues.html", actor, url="/queues/box", box_id="queues", every="2s",
                  queues=monitoring.queues(actor), roles=roles, scheduler=monitoring.schedulers(actor), age=age)


@router.get("/queues", name="pages.queues")
def queues_page(request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    box, _ = _box(request, actor)
    return render(request, "admin/queues.html", actor, title="Queues and workers", box=box)


@router.get("/queues/box", name="pages.queues_box")
def queues_box(request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    return poll_answer(request, *_box(request, actor))
