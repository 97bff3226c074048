"""The FastAPI application: routes are thin, the rules live in the service layer (openvle.service)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from openvle import __version__
from openvle.backend import (
    audit,
    auth,
    errors,
    events,
    health,
    metrics,
    monitoring,
    pages,
    tasks,
    templates,
    users,
    vms,
)
from openvle.backend.auditing import AuditMiddleware
from openvle.settings import get_settings

DESCRIPTION = """The front door of OpenVLE Tasks. Authenticate with `Authorization: Bearer <token>`
(`POST /api/auth/tokens`, or `openvle token create`) or the session cookie `POST /api/auth/login` sets
(then send its `csrf_token` as `X-CSRF-Token` with every change). An object you may not see answers 404."""


def create_app() -> FastAPI:
    # /docs and /redoc load their scripts from our own static files, never from a CDN; Swagger's
    # validator badge would call swagger.io.
    app = FastAPIOffline(title="OpenVLE Tasks", version=__version__, description=DESCRIPTION,
                         static_url="/static/docs", swagger_ui_parameters={"validatorUrl": None})
    errors.install(app)
    app.add_middleware(AuditMiddleware)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(users.me)
    app.include_router(users.admin)
    app.include_router(templates.router)
    app.include_router(events.router)
    app.include_router(vms.router)
    if get_settings().DEV_MODE:
        app.include_router(tasks.demo_router())
    app.include_router(tasks.router)
    app.include_router(monitoring.router)
    app.include_router(audit.router)
    app.include_router(metrics.router)
    pages.install(app)
    return app
