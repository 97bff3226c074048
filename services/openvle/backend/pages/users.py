"""Users (admins): find accounts, make one (they get an email to choose a password), change a role,
switch an account off, send a new password link, and see and revoke anyone's API tokens. The rules
(the last admin stays an admin, who may see which tokens) are service/users'."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts.identity import Actor
from openvle.backend.common import Id, audit_as, audit_detail
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.guard import admin_actor
from openvle.backend.pages.inputs import error_by_field, parse, typed
from openvle.backend.pages.render import render
from openvle.errors import RequestError
from openvle.service import users
from openvle.service.users import NewUser, UserPatch

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NEW_FIELDS = ("username", "email", "role", "first_name", "last_name")
EDIT_FIELDS = ("email", "role", "active", "first_name", "last_name")
ROLES = ("student", "teacher", "admin")
PAGE = 100
SAID_AS = {"username": ("user name",), "email": ("email address", "email '")}


def _list(request: Request, actor: Actor, q: str, role: str, before: int | None, values: dict[str, str],
          errors: dict[str, str], status: int = 200, note: str | None = None):
    page = users.list_users(actor, role or None, q or None, before, PAGE)
    older = None
    if page.next_before:
        older = "/users?" + urlencode({k: v for k, v in (("q", q), ("role", role), ("before", page.next_before)) if v})
    return render(request, "admin/users.html", actor, status=status, title="Users", users=page.items, q=q, role=role,
                  roles=ROLES, older=older, values=values, errors=errors, note=note)


@router.get("/users", name="pages.users")
def user_list(request: Request, q: str = Query("", max_length=100), role: Literal["", *ROLES] = "",
              before: int | None = Query(None, ge=1, le=2**31 - 1), actor: Actor = Depends(admin_actor)) -> Response:
    return _list(request, actor, q, role, before, {"role": "student"}, {})


@router.post("/users", name="pages.user_create")
async def user_create(request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    values = typed(await request.form(), NEW_FIELDS)
    body, errors = parse(NewUser, values)
    if body is not None:
        try:
            made = await run_in_threadpool(users.create_user, actor, body)
        except RequestError as exc:
            errors = error_by_field(exc, NEW_FIELDS, "username", SAID_AS)
        else:
            audit_as(request, "user", made.id)
            return RedirectResponse(f"/users/{made.id}?made=1", status_code=303)
    return await run_in_threadpool(_list, request, actor, "", "", None, values, errors, 422)


def _one(request: Request, actor: Actor, user_id: int, values: dict[str, str] | None = None,
         errors: dict[str, str] | None = None, status: int = 200, note: str | None = None):
    user = users.get_user(actor, user_id)
    if values is None:
        values = {"email": user.email, "role": user.role, "active": "true" if user.active else "false",
                  "first_name": user.first_name, "last_name": user.last_name}
    return render(request, "admin/user.html", actor, status=status, title=f"User {user.username}", user=user,
                  tokens=users.my_tokens(actor, user_id), values=values, errors=errors or {}, note=note, roles=ROLES)


@router.get("/users/{user_id}", name="pages.user")
def user_page(user_id: Id, request: Request, made: bool = False, actor: Actor = Depends(admin_actor)) -> Response:
    return _one(request, actor, user_id, note="Account made; they were emailed a link to choose a password."
                if made else None)


@router.post("/users/{user_id}", name="pages.user_update")
async def user_update(user_id: Id, request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    values = typed(await request.form(), EDIT_FIELDS)
    patch, errors = parse(UserPatch, values)
    if patch is not None:
        try:
            await run_in_threadpool(users.update_user, actor, user_id, patch)
        except RequestError as exc:
            if exc.status == 404:
                raise
            errors = error_by_field(exc, EDIT_FIELDS, "role", SAID_AS)
        else:
            return await run_in_threadpool(_one, request, actor, user_id, None, None, 200, "Saved.")
    return await run_in_threadpool(_one, request, actor, user_id, values, errors, 422)


@router.post("/users/{user_id}/password-link", name="pages.user_link")
async def user_link(user_id: Id, request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    try:
        sent = await run_in_threadpool(users.send_link, actor, user_id)
    except RequestError as exc:
        if exc.status == 404:
            raise
        return await run_in_threadpool(_one, request, actor, user_id, None, {"link": str(exc)}, exc.status)
    audit_detail(request, "password link sent" if sent else "a link went out moments ago")
    return await run_in_threadpool(_one, request, actor, user_id, None, None, 200,
                                   "A password link is on its way." if sent else
                                   "A link went out moments ago: it is still on its way.")


@router.post("/users/{user_id}/tokens/{token_id}/revoke", name="pages.user_token_revoke")
async def user_token_revoke(user_id: Id, token_id: Id, request: Request, actor: Actor = Depends(admin_actor)
                            ) -> Response:
    revoked = await run_in_threadpool(users.revoke_token, actor, token_id, user_id)
    return await run_in_threadpool(_one, request, actor, user_id, None, None, 200, f"Token {revoked.name} revoked.")
