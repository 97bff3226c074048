"""Every error the API returns is JSON with a sentence that says what is wrong and how to fix it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from openvle.accounts.identity import LoginFailed
from openvle.accounts.throttle import Refused
from openvle.backend.pages.access import LoginRequired, wants_page
from openvle.backend.pages.errors import error_page, to_login
from openvle.errors import QueueUnavailable, RequestError

log = logging.getLogger("openvle.backend")


def _json(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _error(request: Request, status: int, message: str, **extra) -> Response:
    """JSON for the API; for a page (pages.access.PageRoute), the same sentence on an HTML page."""
    if wants_page(request):
        return error_page(request, status, message)
    return _json(status, message, **extra)


def _problem(err: dict) -> str:
    """One validation error as a sentence naming the field (or the place in the body) at fault."""
    if err["type"] == "json_invalid":  # loc is ("body", character offset)
        at = err["loc"][-1] if len(err["loc"]) > 1 else "?"
        why = (err.get("ctx") or {}).get("error", "not valid JSON")
        return f"the request body must be JSON (content-type: application/json); it broke at character {at}: {why}"
    if err["type"] == "model_attributes_type" and tuple(err["loc"]) == ("body",):
        return "the request body must be a JSON object (content-type: application/json)"
    where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
    return f"{where}: {err['msg']}"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = [_problem(err) for err in exc.errors()]
        return _error(request, 422, "invalid request: " + "; ".join(problems), problems=problems)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        return to_login(request, exc.next_path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        response = _error(request, exc.status, str(exc))
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if getattr(exc, "retry_after", None) is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(LoginFailed)
    async def login_failed(request: Request, exc: LoginFailed):
        return _error(request, 401, str(exc))

    @app.exception_handler(Refused)
    async def throttled(request: Request, exc: Refused):
        response = _error(request, 429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(QueueUnavailable)
    async def queue_unavailable(request: Request, exc: QueueUnavailable):
        return _error(request, 503, str(exc), task_id=exc.task_id)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError):
        log.error("Redis error on %s: %s", request.url.path, type(exc).__name__)
        return _error(request, 503, "Redis is not answering; try again shortly")

    @app.exception_handler(OperationalError)
    async def db_down(request: Request, exc: OperationalError):
        log.error("database error on %s: %s", request.url.path, type(exc).__name__)
        return _error(request, 503, "the database is not answering; try again shortly")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(request, 500, "internal error; the backend log has the details")
