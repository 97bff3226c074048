"""Who is looking at a page: the API's own front door (backend/auth.current_actor), so a page sees and
changes exactly what the API would let the same person see and change. Not logged in: a page sends
the browser to /login (and back afterwards); an object the user may not see is a 404 page.

Page routes use `PageRoute`, so an error raised while answering one (NotFound, Forbidden, a bad id in
the path) is drawn as an HTML page instead of the API's JSON."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from openvle.accounts import sessions
from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.errors import Unauthenticated

_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=sessions.COOKIE, auto_error=False)


class PageRoute(APIRoute):
    """A route that answers with HTML: its errors are pages too (see pages/errors.py)."""


class LoginRequired(Exception):
    """Nobody (or an ended session) asked for a page: log in first, then come back to `next_path`."""

    def __init__(self, next_path: str):
        super().__init__("log in first")
        self.next_path = next_path


def is_page(request: Request) -> bool:
    return isinstance(request.scope.get("route"), PageRoute)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def login_url(next_path: str | None) -> str:
    return "/login" if not next_path or next_path == "/" else f"/login?next={quote(next_path, safe='/')}"


def safe_next(value: str | None) -> str | None:
    """Only a path on this site: `next=https://evil.example` (or //evil.example) must not send a
    freshly logged-in user elsewhere."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    return value


async def page_actor(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                     cookie: str | None = Depends(_cookie)) -> Actor:
    """The logged-in user, through the very dependency the API uses (session cookie + CSRF token on
    every change); not logged in -> LoginRequired (a redirect to /login)."""
    try:
        return await current_actor(request, bearer, cookie)
    except Unauthenticated:
        # Polls (htmx) come back to the page they belong to, never to a fragment's URL.
        back = request.headers.get("hx-current-url") if is_htmx(request) else None
        if back:
            parts = urlsplit(back)
            back = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(back if request.method == "GET" or is_htmx(request) else "/") from None


def wants_page(request: Request) -> bool:
    """A page route, or a browser asking for a page that does not exist (outside the API)."""
    if is_page(request):
        return True
    return (request.scope.get("route") is None and not request.url.path.startswith("/api/")
            and "text/html" in request.headers.get("accept", ""))
