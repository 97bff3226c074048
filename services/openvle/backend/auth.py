"""The one authentication dependency every API route uses, and the routes that log in and out.

A request proves who it is with `Authorization: Bearer <API token>` (scripts) or the session cookie a
login set (browsers). A change that a cookie authenticates must also carry the session's CSRF token
(`X-CSRF-Token` header, or a `csrf_token` form field), so another site cannot make a logged-in
browser change anything.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from openvle.accounts import identity, sessions
from openvle.accounts.identity import Actor
from openvle.accounts.secrets import csrf_token, same
from openvle.backend.common import ERRORS, audit_as, client_address
from openvle.errors import Forbidden, Unauthenticated
from openvle.service import users
from openvle.service.users import NewToken
from openvle.service.views import Message, NewTokenView, SessionView
from openvle.settings import get_settings

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

_bearer = HTTPBearer(auto_error=False, description="a personal API token (POST /api/auth/tokens)")
_cookie = APIKeyCookie(name=sessions.COOKIE, auto_error=False, description="the session a login set")


async def current_actor(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                        cookie: str | None = Depends(_cookie)) -> Actor:
    """Who is asking; 401 when nobody (or an unknown, expired or revoked credential), 403 for a
    cookie-authenticated change without the CSRF token."""
    header = request.headers.get("authorization")
    if header is not None:
        if bearer is None:
            raise Unauthenticated("send Authorization: Bearer <token> (make one with POST /api/auth/tokens or "
                                  "`openvle token create`)")
        actor = await run_in_threadpool(identity.from_token, bearer.credentials.strip())
        if actor is None:
            raise Unauthenticated("this token is unknown, expired or revoked: make a new one")
    elif cookie:
        actor = await run_in_threadpool(identity.from_session, cookie)
        if actor is None:
            raise Unauthenticated("your session has ended: log in again (POST /api/auth/login)")
        request.state.actor = actor  # the audit log names who tried, even without the CSRF token
        if request.method not in SAFE_METHODS:
            given = request.headers.get(sessions.CSRF_HEADER)
            if given is None and request.headers.get("content-type", "").startswith(FORMS):
                given = (await request.form()).get("csrf_token")
            if not isinstance(given, str) or not same(given, csrf_token(cookie)):
                raise Forbidden(f"missing or wrong {sessions.CSRF_HEADER} header: send the csrf_token your login "
                                "(or GET /api/auth/session) gave you")
    else:
        raise Unauthenticated("log in first (POST /api/auth/login) or send Authorization: Bearer <token>")
    request.state.actor = actor
    return actor


router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERRORS)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=254, description="user name or email")
    password: str = Field(min_length=1, max_length=256)


class TokenLoginIn(LoginIn):
    name: str = Field(min_length=1, max_length=100, description="what uses the token, e.g. grading-script")
    days: int | None = Field(None, ge=1, le=3650, description="lifetime in days (default 90)")


class ForgotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=254, description="user name or email")


class LinkPasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="the token from the emailed link")
    password: str = Field(min_length=1, max_length=256)


def _secure(request: Request) -> bool:
    setting = get_settings().SESSION_COOKIE_SECURE
    return request.url.scheme == "https" if setting == "auto" else setting == "true"


def _audit_login(request: Request, login: str, actor: Actor | None) -> None:
    if actor is not None:
        request.state.actor = actor
    else:  # name the account only if it exists: a mistyped password in the name field stays out
        user_id = identity.account_named(login)
        audit_as(request, "user", user_id, detail="failed login")


@router.post("/login", name="auth.login", response_model=SessionView,
             summary="Log in: sets the session cookie and returns the CSRF token")
def login(body: LoginIn, request: Request, response: Response) -> SessionView:
    try:
        actor, token, expires = users.login(body.username, body.password, client_address(request))
    except identity.LoginFailed:
        _audit_login(request, body.username, None)
        raise
    _audit_login(request, body.username, actor)
    audit_as(request, "user", actor.user_id)
    lifetime = get_settings().SESSION_LIFETIME_HOURS * 3600
    response.set_cookie(sessions.COOKIE, token, max_age=lifetime, httponly=True, samesite="lax",
                        secure=_secure(request), path="/")
    return SessionView(user=users.user_view(actor.user_id), csrf_token=csrf_token(token), expires_at=expires)


@router.post("/logout", name="auth.logout", response_model=Message, summary="End this browser session")
def logout(request: Request, response: Response, actor: Actor = Depends(current_actor)) -> Message:
    if actor.session_token is not None:
        sessions.close_session(actor.session_token)
    response.delete_cookie(sessions.COOKIE, path="/")
    return Message(message="logged out")


@router.get("/session", name="auth.session", response_model=SessionView,
            summary="Who is logged in, and the CSRF token of this session")
def session(actor: Actor = Depends(current_actor)) -> SessionView:
    return SessionView(user=users.me(actor), csrf_token=csrf_token(actor.session_token) if actor.session_token
                       else None, expires_at=None)


@router.post("/tokens", name="auth.token_login", status_code=201, response_model=NewTokenView,
             summary="Swap a user name and password for a new API token (shown once)")
def token_login(body: TokenLoginIn, request: Request) -> NewTokenView:
    try:
        actor, made = users.token_login(body.username, body.password, client_address(request),
                                        NewToken(name=body.name, days=body.days))
    except identity.LoginFailed:
        _audit_login(request, body.username, None)
        raise
    request.state.actor = actor
    audit_as(request, "token", made.id, detail=f"token {made.name!r} made with a password")
    return made


@router.post("/password-reset", name="auth.password_reset", status_code=202, response_model=Message,
             summary="Email a link to choose a new password (the same answer whether or not the account exists)")
def password_reset(body: ForgotIn) -> Message:
    users.forgot_password(body.username)
    return Message(message="if that account exists, an email with a link is on its way")


@router.post("/password", name="auth.set_password", response_model=Message,
             summary="Choose a password with the token of an emailed link")
def set_password(body: LinkPasswordIn, request: Request) -> Message:
    user_id = users.set_password_with_link(body.token, body.password)
    audit_as(request, "user", user_id, detail="password set with an emailed link")
    return Message(message="password set: log in with it")
