"""The FastAPI application: routes are thin, the work happens in enqueue/tracking."""

from __future__ import annotations

from fastapi import FastAPI

from openvle import __version__
from openvle.backend import errors, health, tasks


def create_app() -> FastAPI:
    app = FastAPI(title="OpenVLE Tasks", version=__version__)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(tasks.router)
    return app
