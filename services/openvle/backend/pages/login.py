"""Logging in and out in a browser: the same accounts, throttling, session cookie and CSRF token as
POST /api/auth/login; a wrong password keeps the typed user name and says what is wrong."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts import identity, sessions
from openvle.accounts.identity import Actor
from openvle.accounts.throttle import Refused
from openvle.backend.auth import _audit_login, _secure
from openvle.backend.common import audit_as, client_address
from openvle.backend.pages.access import PageRoute, page_actor, safe_next
from openvle.backend.pages.render import home_for, render
from openvle.errors import Unauthenticated
from openvle.service import users
from openvle.settings import get_settings

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def _maybe_actor(request: Request) -> Actor | None:
    cookie = request.cookies.get(sessions.COOKIE)
    return await run_in_threadpool(identity.from_session, cookie) if cookie else None


@router.get("/", name="pages.home")
async def home(actor: Actor = Depends(page_actor)) -> Response:
    return RedirectResponse(home_for(actor), status_code=303)


@router.get("/login", name="pages.login_form")
async def login_form(request: Request, next: str | None = Query(None, max_length=2000)) -> Response:
    actor = await _maybe_actor(request)
    if actor is not None:  # logged in already: no second session
        return RedirectResponse(safe_next(next) or home_for(actor), status_code=303)
    return render(request, "login.html", None, title="Log in", username="", next=safe_next(next) or "", errors={})


@router.post("/login", name="pages.login")
def login(request: Request, username: str = Form("", max_length=254), password: str = Form("", max_length=256),
          next: str = Form("", max_length=2000)) -> Response:
    errors, status = {}, 422
    if not username.strip():
        errors["username"] = "Type your user name or email."
    if not password:
        errors["password"] = "Type your password."
    if not errors:
        try:
            actor, token, _ = users.login(username, password, client_address(request))
        except identity.LoginFailed as exc:
            _audit_login(request, username, None)
            errors["password"] = f"{str(exc).capitalize()}: check both and try again."
            status = 401
        except Refused as exc:
            errors["password"] = f"{str(exc).capitalize()}."
            status = 429
        else:
            _audit_login(request, username, actor)
            audit_as(request, "user", actor.user_id)
            response = RedirectResponse(safe_next(next) or home_for(actor), status_code=303)
            response.set_cookie(sessions.COOKIE, token, max_age=get_settings().SESSION_LIFETIME_HOURS * 3600,
                                httponly=True, samesite="lax", secure=_secure(request), path="/")
            return response
    return render(request, "login.html", None, title="Log in", status=status, username=username,
                  next=safe_next(next) or "", errors=errors)


@router.post("/logout", name="pages.logout")
def logout(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    if actor.session_token is None:
        raise Unauthenticated("only a browser session can log out")
    sessions.close_session(actor.session_token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response
