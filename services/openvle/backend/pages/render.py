"""Drawing pages: one Jinja2 environment (HTML autoescaped), the navigation each role gets, the
headers every page carries, and the CSRF token the forms and htmx requests send back."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from openvle.accounts.identity import Actor
from openvle.accounts.secrets import csrf_token
from openvle.db.models import AccountRole

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = "/static/pages"
# htmx 2.0.11: dist/htmx.min.js and LICENSE (0BSD) of `npm pack htmx.org@2.0.11`, sha256 d6fdc75f...f717.
HTMX = f"{STATIC_URL}/vendor/htmx-2.0.11.min.js"

# Our pages load nothing from elsewhere, and no inline script runs (htmx's own indicator styles are
# switched off in base.html for the same reason). Guacamole opens in its own tab: a link, not a frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    min_role: str  # the least role that sees it (student < teacher < admin)


# The one list of page areas; each page module's path is here once. Admin pages add their lines.
NAV: list[NavItem] = [
    NavItem("My labs", "/labs", AccountRole.STUDENT),
    NavItem("Events", "/events", AccountRole.TEACHER),
    NavItem("Tasks", "/tasks", AccountRole.TEACHER),
    NavItem("Queues", "/queues", AccountRole.ADMIN),
    NavItem("Nodes", "/nodes", AccountRole.ADMIN),
    NavItem("Templates", "/templates", AccountRole.ADMIN),
    NavItem("Users", "/users", AccountRole.ADMIN),
    NavItem("Audit log", "/audit", AccountRole.ADMIN),
    NavItem("My tokens", "/tokens", AccountRole.STUDENT),
]


def nav_for(actor: Actor | None) -> list[NavItem]:
    if actor is None:
        return []
    rank = AccountRole.RANK.get(actor.role, 0)
    return [item for item in NAV if AccountRole.RANK[item.min_role] <= rank]


def home_for(actor: Actor) -> str:
    """Where a user lands after logging in: students their labs, the others the events."""
    return "/events" if actor.is_teacher else "/labs"


def _when(value: dt.datetime | None, empty: str = "–") -> str:
    """A UTC time as people read it; the zone is said once, not on every value."""
    if value is None:
        return empty
    return value.strftime("%Y-%m-%d %H:%M")


def _words(value: str | None) -> str:
    return (value or "").replace("_", " ")


def _sentence(value: str | None) -> str:
    """The service layer's messages start lower-case (they read well after "error: "); a page shows
    them as a sentence. Jinja's capitalize would lower the rest (VM -> Vm)."""
    return (value[:1].upper() + value[1:]) if value else ""


env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
env.filters["when"] = _when
env.filters["words"] = _words
env.filters["sentence"] = _sentence
env.globals.update(HTMX=HTMX, STATIC_URL=STATIC_URL)


def html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(text, status_code=status,
                        headers={"Cache-Control": "no-store", **SECURITY_HEADERS, **(headers or {})})


def render(request: Request, template: str, actor: Actor | None = None, status: int = 200,
           headers: dict[str, str] | None = None, **context) -> HTMLResponse:
    """A whole page (or, for templates named `_*.html`, a fragment htmx swaps in)."""
    token = csrf_token(actor.session_token) if actor is not None and actor.session_token else ""
    page = env.get_template(template).render(request=request, actor=actor, nav=nav_for(actor), csrf=token,
                                             path=request.url.path, **context)
    return html(page, status, headers)


def polled(request: Request, template: str, actor: Actor, url: str, box_id: str, every: str = "1s",
           **context) -> tuple[Markup, str]:
    """A part of a page that keeps itself current: htmx asks `url` again `every` while it is shown,
    sending the ETag of what it shows as If-None-Match. Returns (the HTML, its ETag)."""
    inner = env.get_template(template).render(request=request, actor=actor, path=request.url.path,
                                              csrf=csrf_token(actor.session_token or ""), **context)
    etag = '"' + hashlib.sha256(inner.encode()).hexdigest()[:32] + '"'
    box = env.get_template("_polled.html").render(box_id=box_id, url=url, every=every, etag=etag,
                                                  inner=Markup(inner))
    return Markup(box), etag


def poll_answer(request: Request, box: Markup, etag: str) -> Response:
    """The answer to a poll: 304 (htmx leaves the page alone, keyboard focus stays put) when the
    browser shows this very content already, else the new box."""
    headers = {"ETag": etag, "Cache-Control": "no-cache, private", **SECURITY_HEADERS}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return HTMLResponse(str(box), headers=headers)
