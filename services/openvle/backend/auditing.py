"""The audit middleware: every request that may change something (not GET/HEAD/OPTIONS) that reached a
route is recorded after its answer: who (the actor the auth dependency found), from where, which
route (the action), on which object (path parameters, or what the handler named), and the status."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openvle import auditlog

log = logging.getLogger("openvle.audit")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Path parameters that name the object a request acts on, most specific last.
OBJECTS = (("event_id", "event"), ("template_id", "template"), ("user_id", "user"), ("vm_id", "vm"),
           ("task_id", "task"), ("token_id", "token"))


class AuditMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            if route is not None and getattr(route, "name", None):
                try:
                    await run_in_threadpool(_record, scope, route.name, status["code"])
                except Exception:  # the answer is out already; the log says the record is missing
                    log.exception("could not write the audit record of %s %s", scope["method"], scope["path"])


def _record(scope: Scope, action: str, code: int) -> None:
    state = scope.get("state") or {}
    params = scope.get("path_params") or {}
    object_type = object_id = None
    for param, kind in OBJECTS:
        if param in params:
            object_type, object_id = kind, params[param]
    named = state.get("audit_object")
    if named is not None:
        object_type, object_id = named
    detail = state.get("audit_detail")
    if object_type == "user" and "event_id" in params:  # a participant of an event
        object_type, object_id, detail = "event", params["event_id"], detail or f"user {params['user_id']}"
    client = scope.get("client")
    auditlog.record(actor=state.get("actor"), address=client[0] if client else None, method=scope["method"],
                 path=scope["path"], action=action, outcome=code, object_type=object_type, object_id=object_id,
                 detail=detail)
