"""The FastAPI application: routes are thin, the work happens in enqueue/tracking."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from openvle import __version__
from openvle.backend import errors, health, tasks


def create_app() -> FastAPI:
    # /docs and /redoc load their scripts from our own static files, never from a CDN.
    app = FastAPIOffline(title="OpenVLE Tasks", version=__version__, static_url="/static/docs",
                         swagger_ui_parameters={"validatorUrl": None})  # its badge calls swagger.io
    errors.install(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    return app
