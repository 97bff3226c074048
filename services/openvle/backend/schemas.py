"""Request bodies only the API has (the shared ones are in specs.py and the service layer)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from openvle.queues import QUEUE_NAMES


class DemoTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str = Field("core_periodic", description=f"one of {', '.join(QUEUE_NAMES)}")
    duration: float = Field(0.0, ge=0, le=3600, description="seconds the demo job works")
    fail_times: int = Field(0, ge=0, le=100, description="how many attempts fail before one succeeds")
    permanent: bool = Field(False, description="fail with a permanent error (no retry)")
    error_message: str | None = Field(None, max_length=500, description="the text the planned failures raise")
    wait_checks: int = Field(0, ge=0, le=100, description="times the job waits 1 s without holding the worker")
    depends_on: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        default_factory=list, max_length=1000, description="task ids that must succeed first")
