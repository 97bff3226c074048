"""Liveness of what the backend needs (unauthenticated: load balancers and Docker ask it). What
operators watch in detail is in monitoring.py."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from openvle.connections import get_redis
from openvle.db.engine import get_engine

router = APIRouter()


@router.get("/healthz", summary="200 when Redis and the database answer, else 503 naming what is down")
def healthz() -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return JSONResponse({"status": "down", "down": down, "checks": checks}, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks})
