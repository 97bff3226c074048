"""My labs: one card per VM of the student's own, each keeping itself current (htmx polls with an
ETag), with the Guacamole button and start / stop / reset. A button asks service/vms.act, as the API
does; the card then shows the action pending until its Task settles."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from openvle.accounts.identity import Actor
from openvle.backend.common import Id
from openvle.backend.pages.access import PageRoute, is_htmx, page_actor
from openvle.backend.pages.render import html, poll_answer, polled, render
from openvle.service import fresh_starts, vms

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _cards(request: Request, actor: Actor):
    return polled(request, "labs/_cards.html", actor, url="/labs/cards", box_id="labs", labs=vms.my_labs(actor))


def _card(request: Request, actor: Actor, vm_id: int):
    return polled(request, "labs/_card.html", actor, url=f"/labs/vms/{vm_id}/card", box_id=f"vm-{vm_id}",
                  lab=vms.lab(actor, vm_id))


@router.get("/labs", name="pages.labs")
def labs(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    box, _ = _cards(request, actor)
    return render(request, "labs/index.html", actor, title="My labs", cards=box)


@router.get("/labs/cards", name="pages.labs_cards")
def labs_cards(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    return poll_answer(request, *_cards(request, actor))


@router.get("/labs/vms/{vm_id}", name="pages.lab")
def lab(vm_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    box, _ = _card(request, actor, vm_id)
    return render(request, "labs/vm.html", actor, title=f"VM {vm_id}", card=box)


@router.get("/labs/vms/{vm_id}/card", name="pages.lab_card")
def lab_card(vm_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    return poll_answer(request, *_card(request, actor, vm_id))


@router.post("/labs/vms/{vm_id}/fresh-start", name="pages.lab_fresh_start")
def fresh_start(vm_id: Id, request: Request, then: Literal["list", "card"] = Query("list"),
                actor: Actor = Depends(page_actor)) -> Response:
    """The same request as POST /api/vms/{id}/fresh-start (after the button's confirmation)."""
    fresh_starts.fresh_start(actor, vm_id)
    if not is_htmx(request):
        return RedirectResponse("/labs" if then == "list" else f"/labs/vms/{vm_id}", status_code=303)
    box, _ = _cards(request, actor) if then == "list" else _card(request, actor, vm_id)
    return html(str(box))


@router.post("/labs/vms/{vm_id}/{action}", name="pages.lab_act")
def act(vm_id: Id, action: Literal["start", "stop", "reset"], request: Request,
        then: Literal["list", "card"] = Query("list"), actor: Actor = Depends(page_actor)) -> Response:
    """The same request as POST /api/vms/{id}/{action}; answers with what the button sits in (the
    list of cards, or the one card), now showing the action pending. Without JavaScript the form
    posts and comes back to the page."""
    vms.act(actor, vm_id, action)
    if not is_htmx(request):
        return RedirectResponse("/labs" if then == "list" else f"/labs/vms/{vm_id}", status_code=303)
    box, _ = _cards(request, actor) if then == "list" else _card(request, actor, vm_id)
    return html(str(box))
