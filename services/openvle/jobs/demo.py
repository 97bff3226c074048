"""A demonstration operation that exercises the whole path: progress, logs, retries, failures (one
`demo.<queue>` per queue, operations.py)."""

from __future__ import annotations

import time

from openvle.context import CheckBack, TaskContext
from openvle.errors import PermanentError


def demo(
    ctx: TaskContext,
    duration: float = 0.0,
    fail_times: int = 0,
    permanent: bool = False,
    error_message: str | None = None,
    wait_checks: int = 0,
) -> dict | CheckBack:
    if permanent:
        raise PermanentError(error_message or "demo: asked to fail permanently")
    if ctx.attempt <= fail_times:
        raise RuntimeError(error_message or f"demo: planned failure {ctx.attempt} of {fail_times}")
    if ctx.checks < wait_checks:  # waits like a job polling an outside system, without holding the worker
        ctx.progress(100 * ctx.checks // wait_checks, f"waiting {ctx.checks + 1} of {wait_checks}")
        return ctx.check_back(1, f"demo wait {ctx.checks + 1} of {wait_checks}")
    steps = 4 if duration > 0 else 1
    for step in range(1, steps + 1):
        time.sleep(duration / steps)
        ctx.progress(step * 100 // steps, f"step {step} of {steps}")
    ctx.log(f"done after {ctx.attempt} attempt(s)")
    return {"attempt": ctx.attempt, "slept": duration, "checks": ctx.checks}


def noop(ctx: TaskContext) -> None:
    """Does nothing: the benchmark measures the bookkeeping around it."""


def demo_operation(queue: str) -> str:
    return f"demo.{queue}"
