"""Following a deploy, archive, suspend or resume from the command line (`--wait`): a live view with
one bar per stage on a terminal, one line per change in logs and CI, and the exit code of the outcome."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from openvle.cli_base import EXIT_FAILED, EXIT_OK, CliError, clock, fail, status_text

DEPLOY_STAGES = ("clone", "start", "access", "course", "enrol", "email", "course_email")
ARCHIVE_STAGES = ("access", "stop", "delete", "account", "email", "course")
SUSPEND_STAGES = ("revoke", "stop")
RUN_STAGES = {"event.archive": ARCHIVE_STAGES, "event.suspend": SUSPEND_STAGES}  # else the deploy's (resume too)
PARTICIPANT_STAGES = ("clone", "start", "access", "revoke", "stop", "delete", "account", "email", "course_email")
EVENT_STAGES = ("course", "enrol")
SETTLED_OK = {"event.deploy": "deployed", "event.archive": "archived", "event.suspend": "suspended",
              "event.resume": "deployed"}


def busy(event_id: int, shown: dict) -> bool:
    """A deploy or archive of the event is still in flight (ours, or one that got there first)."""
    if shown["in_flight"]:
        return True
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Event, Task, TaskStatus

    with session_scope() as session:
        status = session.execute(select(Task.status).join(Event, Event.active_task_id == Task.id)
                                 .where(Event.id == event_id)).scalar()
    return status in TaskStatus.ACTIVE


def watch(event_id: int, timeout: float | None = None, out: TextIO | None = None, interval: float = 1.0) -> dict:
    """Redraw the event's progress about once a second until it settles; returns the last progress."""
    from openvle.lab_events import progress

    out = out or sys.stdout
    view: _View = _LiveView(out) if out.isatty() and os.environ.get("TERM") != "dumb" else _PlainView(out)
    started = time.monotonic()
    next_worker_check = started + 5
    no_workers = False
    shown: dict = {"operation": None}
    try:
        while True:
            shown = progress(event_id)
            settled = not busy(event_id, shown)
            elapsed = time.monotonic() - started
            if not settled and shown["steps"] == 0 and time.monotonic() >= next_worker_check:
                next_worker_check = time.monotonic() + 10
                no_workers = not _workers_listening()
            hint = None
            if no_workers and not settled and shown["steps"] == 0:
                hint = "no worker listens on core_periodic: start `make dev` or `openvle run worker`"
            view.draw(shown, elapsed, settled, hint)
            if settled:
                return shown
            if timeout is not None and elapsed >= timeout:
                raise _Timeout(shown, elapsed)
            time.sleep(interval)
    except KeyboardInterrupt:
        view.close()
        verb = (shown["operation"] or "event.run").split(".")[1]
        fail(f"stopped watching; the {verb} of event {event_id} goes on: `openvle event show {event_id}`")
        raise
    finally:
        view.close()


class _Timeout(CliError):
    code = EXIT_FAILED

    def __init__(self, shown: dict, elapsed: float):
        verb = (shown["operation"] or "event.run").split(".")[1]
        super().__init__(f"event {shown['event_id']} is still {status_text(shown['status'])} after {elapsed:.0f}s "
                         f"({shown['percent']}%); the {verb} goes on: `openvle event show {shown['event_id']}`")


def _workers_listening() -> bool:
    from rq import Worker

    from openvle.connections import get_redis

    try:
        return any("core_periodic" in w.queue_names() for w in Worker.all(connection=get_redis()))
    except Exception:
        return True  # cannot tell: say nothing


def report(shown: dict, operation: str) -> int:
    wanted = SETTLED_OK.get(shown["operation"] or operation, SETTLED_OK[operation])
    print(f"event {shown['event_id']} ({shown['name']}): {status_text(shown['status'])}", flush=True)
    if shown["reason"]:
        print(f"  reason: {shown['reason']}", flush=True)
    return EXIT_OK if shown["status"] == wanted else EXIT_FAILED


def stage_rows(shown: dict) -> list[tuple[str, dict[str, int]]]:
    """The stages of the run in flight (deploy or archive), in order, with their state counts."""
    if not shown["steps"]:
        return []
    order = RUN_STAGES.get(shown["operation"], DEPLOY_STAGES)
    return [(stage, shown["stages"][stage]) for stage in order if stage in shown["stages"]]


STATE_ORDER = ("done", "failed", "cancelled", "running", "queued")


def _counts_text(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    extra = [f"{counts[s]} {s}" for s in STATE_ORDER[1:] if counts.get(s)]
    return f"{counts.get('done', 0)}/{total}" + (f" ({', '.join(extra)})" if extra else "")


class _View:
    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PlainView(_View):
    """Logs and CI: one line when something changed (at most once a second) and every 15 s anyway."""

    HEARTBEAT = 15.0

    def __init__(self, out: TextIO):
        self.out = out
        self.last = ""
        self.last_at = -1e9

    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        rows = stage_rows(shown)
        verb = (shown["operation"] or "event.deploy").split(".")[1]
        if rows:
            body = f"{verb} {shown['percent']:>3}% | " + " | ".join(f"{s} {_counts_text(c)}" for s, c in rows)
        else:
            body = f"{verb}: waiting for a worker to plan the steps"
        if hint:
            body += f" | {hint}"
        if body != self.last or elapsed - self.last_at >= self.HEARTBEAT or settled:
            if settled and body == self.last:
                return
            self.out.write(f"[{clock(elapsed)}] {body}\n")
            self.out.flush()
            self.last, self.last_at = body, elapsed


class _LiveView(_View):
    """A terminal: one bar per stage and the overall percent, redrawn in place (ANSI cursor moves)."""

    WIDTH = 30
    COLORS = {"done": "32", "failed": "31", "cancelled": "35", "running": "33", "queued": "90"}

    def __init__(self, out: TextIO):
        self.out = out
        self.lines = 0
        self.closed = False
        self.color = not os.environ.get("NO_COLOR")  # no-color.org: set and not empty
        utf8 = "utf" in (getattr(out, "encoding", "") or "").lower()
        self.chars = dict(zip(STATE_ORDER, "█!x▒·" if utf8 else "#!x>.", strict=True))
        self.out.write("\x1b[?25l")  # hide the cursor while redrawing

    def _paint(self, state: str, text: str) -> str:
        return f"\x1b[{self.COLORS[state]}m{text}\x1b[0m" if self.color and text else text

    def bar(self, counts: dict[str, int]) -> str:
        total = sum(counts.values()) or 1
        cells, used, running_total = [], 0, 0
        for state in STATE_ORDER:
            running_total += counts.get(state, 0)
            upto = int(running_total * self.WIDTH / total + 0.5)
            cells.append(self._paint(state, self.chars[state] * (upto - used)))
            used = upto
        return "".join(cells)

    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        verb = (shown["operation"] or "event.deploy").split(".")[1]
        head = f"{verb.title()} of {shown['name']} (event {shown['event_id']})"
        overall = f"{shown['percent']:>3}%  {shown['settled']}/{shown['steps']} steps  {clock(elapsed)}"
        lines = [f"{head}  {overall}"]
        rows = stage_rows(shown)
        for stage, counts in rows:
            lines.append(f"  {stage:<8}{self.bar(counts)}  {_counts_text(counts)}")
        if not rows:
            lines.append("  waiting for a worker to plan the steps…" if "█" in self.chars.values()
                         else "  waiting for a worker to plan the steps...")
        if hint:
            lines.append(f"  {hint}")
        up = f"\x1b[{self.lines}F" if self.lines else ""
        self.out.write(up + "\x1b[J" + "".join(f"{line}\n" for line in lines))
        self.out.flush()
        self.lines = len(lines)

    def close(self) -> None:
        if not self.closed and not self.out.closed:
            self.out.write("\x1b[?25h")  # the cursor back
            self.out.flush()
        self.closed = True
