"""The web pages, served by the backend next to the API: server-rendered HTML (Jinja2) with a
vendored htmx for the parts that update themselves. One module per page area; each uses the
service layer and the API's front door (pages.access), never a way of its own.

Adding an area: a module with `router = APIRouter(route_class=PageRoute, include_in_schema=False)`,
its line in ROUTERS below and, if it belongs in the navigation, in render.NAV."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openvle.backend.pages import audit, labs, login, nodes, operations, password, tasks, tokens, users, vm_templates
from openvle.backend.pages import events as event_pages
from openvle.backend.pages.render import STATIC, STATIC_URL

ROUTERS = [login.router, password.router, labs.router, event_pages.router,
           # the admin pages (and everyone's tokens)
           tasks.router, operations.router, nodes.router, vm_templates.router, users.router, tokens.router,
           audit.router]


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="pages-static")
