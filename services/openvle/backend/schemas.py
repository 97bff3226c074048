"""What the API returns and accepts. Times are UTC with a trailing Z."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from openvle.db.models import iso_utc
from openvle.queues import QUEUE_NAMES


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return iso_utc(value)
        return value


class SubTaskOut(_Out):
    attempt: int
    status: str
    error: str | None
    worker: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class TaskLogOut(_Out):
    attempt: int
    level: str
    message: str
    created_at: dt.datetime


class TaskOut(_Out):
    id: int
    operation: str
    target: str | None
    queue: str
    status: str
    progress: int
    message: str | None
    error: str | None
    result: Any = None
    attempts: int
    max_attempts: int
    requested_by: str | None
    rq_job_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class TaskDetailOut(TaskOut):
    params: dict[str, Any]
    depends_on: list[int]
    subtasks: list[SubTaskOut]
    logs: list[TaskLogOut]


class DemoTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str = Field("core_periodic", description=f"one of {', '.join(QUEUE_NAMES)}")
    duration: float = Field(0.0, ge=0, le=3600, description="seconds the demo job works")
    fail_times: int = Field(0, ge=0, le=100, description="how many attempts fail before one succeeds")
    permanent: bool = Field(False, description="fail with a permanent error (no retry)")
    error_message: str | None = Field(None, max_length=500, description="the text the planned failures raise")
    wait_checks: int = Field(0, ge=0, le=100, description="times the job waits 1 s without holding the worker")
    depends_on: list[int] = Field(default_factory=list, description="task ids that must succeed first")
