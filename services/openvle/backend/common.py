"""What every router shares: the error answers it documents, the caller's address, audit notes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel, Field

# Every id in a path: a positive 32-bit integer (what the database holds), anything else is 422.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


class ErrorView(BaseModel):
    error: str = Field(description="what is wrong and how to fix it")
    problems: list[str] | None = Field(None, description="for invalid requests: one line per problem")
    task_id: int | None = Field(None, description="for 503: the Task that was saved and will be queued")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorView, "description": text}
    for status, text in ((401, "not logged in, or the token is unknown, expired or revoked"),
                         (403, "visible, but the caller's role may not do this"),
                         (404, "does not exist, or the caller may not see it"),
                         (409, "the object's state does not allow it now"),
                         (422, "the request is invalid: the message names the field"),
                         (429, "too many failed logins, or a fresh start within RESET_TO_TEMPLATE_COOLDOWN: wait "
                               "Retry-After seconds"),
                         (503, "Redis or the database is not answering"))
}


def client_address(request: Request) -> str | None:
    """The caller's address (uvicorn takes it from X-Forwarded-For when the proxy is trusted)."""
    return request.client.host if request.client else None


def audit_as(request: Request, object_type: str, object_id: Any, detail: str | None = None) -> None:
    """Tell the audit log which object this request changed (when the path does not say)."""
    request.state.audit_object = (object_type, object_id)
    if detail is not None:
        request.state.audit_detail = detail


def audit_detail(request: Request, detail: str) -> None:
    request.state.audit_detail = detail
