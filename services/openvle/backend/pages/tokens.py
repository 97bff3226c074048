"""My API tokens (everyone): the list, a form to make one (the token is shown on the answer to that
form, once, and never again: only its hash is kept) and revoking one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts.identity import Actor
from openvle.backend.common import Id, audit_as
from openvle.backend.pages.access import PageRoute, page_actor
from openvle.backend.pages.inputs import error_by_field, parse, typed
from openvle.backend.pages.render import render
from openvle.errors import RequestError
from openvle.service import users
from openvle.service.users import NewToken
from openvle.service.views import NewTokenView

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FIELDS = ("name", "days")


def _page(request: Request, actor: Actor, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          status: int = 200, made: NewTokenView | None = None, note: str | None = None):
    # Every page is sent with Cache-Control: no-store (render.html), so a fresh token is not kept by a cache.
    return render(request, "admin/tokens.html", actor, status=status, title="My API tokens",
                  tokens=users.my_tokens(actor), values=values or {"name": "", "days": ""}, errors=errors or {},
                  made=made, note=note)


@router.get("/tokens", name="pages.tokens")
def token_list(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    return _page(request, actor)


@router.post("/tokens", name="pages.token_create")
async def token_create(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    values = typed(await request.form(), FIELDS)
    body, errors = parse(NewToken, values)
    if body is not None:
        try:
            made = await run_in_threadpool(users.create_token, actor, body)
        except RequestError as exc:
            errors = error_by_field(exc, FIELDS, "name")
        else:
            audit_as(request, "token", made.id, detail=f"token {made.name!r} made")
            return await run_in_threadpool(_page, request, actor, None, None, 201, made)
    return await run_in_threadpool(_page, request, actor, values, errors, 422)


@router.post("/tokens/{token_id}/revoke", name="pages.token_revoke")
async def token_revoke(token_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    revoked = await run_in_threadpool(users.revoke_token, actor, token_id)
    return await run_in_threadpool(_page, request, actor, None, None, 200, None, f"Token {revoked.name} revoked.")
