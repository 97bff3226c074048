"""make bench-pages: how long the heaviest pages take to render over a big database.

Fills MariaDB (database openvle_bench_pages, dropped after) with one 200-participant event that was
deployed (each participant's clone → start → access → email chain, the course, the enrolment and
the final marker, a few of them failed) among --tasks Tasks in all (the rest spread over 400 other
events and the periodic queues, each with an attempt), starts the backend role as its own process
(as compose runs it), logs in as an admin and asks for each page in turn, one request at a time (so
the time is the page's own, not a queue's): the event page, the tasks page (first page, filtered by
status, by event, a deep page) and one Task's page. Prints p50 and p95 of each (goal: p95 under
300 ms for the event page and the tasks page).

    .venv/bin/python bench/pages.py [--tasks 100000] [--participants 200] [--rounds 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
import uuid

import httpx
from sqlalchemy import create_engine, insert, text

from backend import ROOT, bench_database, running_backend

sys.path.insert(0, str(ROOT / "services"))
DATABASE = "openvle_bench_pages"
REDIS_URL = os.environ.get("OPENVLE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
STATUSES = [("success", 85), ("error", 5), ("cancelled", 3), ("queued", 5), ("processing", 2)]
QUEUES = {"pve_vm_clone": "vm.clone", "pve_vm_actions": "vm.start", "mails": "mail.send",
          "guacamole": "guac.provision", "moodle": "event.enrol", "core_periodic": "event.deploy",
          "pve_periodic": "nodes.sync"}
STAGES = [("clone", "vm.clone", "pve_vm_clone"), ("start", "vm.start", "pve_vm_actions"),
          ("access", "guac.provision", "guacamole"), ("email", "event.access_email", "mails")]
EVENT_ID = 1


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _task(task_id: int, operation: str, queue: str, target: str, status: str, at: float, **extra) -> dict:
    created = _stamp(at)
    return dict(id=task_id, operation=operation, target=target, queue=queue, params={}, status=status,
                progress=100 if status == "success" else 0, attempts=1, max_attempts=6, rq_job_id=uuid.uuid4().hex,
                created_at=created, updated_at=created, requested_by=extra.pop("requested_by", "scheduler"),
                error="ProxmoxError: 500 clone failed: storage lock timeout" if status == "error" else
                ("cancelled: task 1 it depends on failed" if status == "cancelled" else None),
                event_id=extra.pop("event_id", None), vm_id=extra.pop("vm_id", None), **extra)


def fill(url: str, count: int, people: int) -> dict:
    """The event's people and their deploy first (ids 1…), then the other Tasks over the last 30 days
    with the newest highest, as the system makes them; the event's deploy sits a day back."""
    from openvle.accounts.sessions import COOKIE, open_session
    from openvle.db import engine as db_engine
    from openvle.db.models import Event, Participant, SubTask, Task, TaskDependency, Template, User, Vm

    engine = create_engine(url)
    rng = random.Random(11)
    now = time.time()
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(insert(Template.__table__), [dict(id=1, name="ubuntu-24.04", pve_vmid=9000, node="pve1",
                                                        clone_mode="linked", protocol="rdp", port=3389)])
        conn.execute(insert(User.__table__), [dict(id=1, username="bench-admin", email="admin@bench.test",
                                                   first_name="Bench", last_name="Admin", role="admin"),
                                              dict(id=2, username="bench-teacher", email="teacher@bench.test",
                                                   first_name="Bench", last_name="Teacher", role="teacher")] +
                     [dict(id=10 + n, username=f"student{n:03d}", email=f"student{n:03d}@bench.test",
                           first_name=f"Student{n}", last_name="Bench", role="student") for n in range(people)])
        start = dt.datetime.fromtimestamp(now + 86400, dt.UTC).replace(tzinfo=None)
        conn.execute(insert(Event.__table__), [dict(id=EVENT_ID, name="Bench Lab", description="200 people",
                                                    start_at=start, end_at=start + dt.timedelta(hours=8),
                                                    template_id=1, status="deployed_with_failures",
                                                    status_reason="3 participants failed")])
        conn.execute(insert(Vm.__table__), [dict(id=1 + n, name=f"bench-lab-student{n:03d}", template_id=1,
                                                 vmid=1000 + n, node=f"pve{1 + n % 3}", state="ready",
                                                 status="running", event_id=EVENT_ID, participant_id=1 + n,
                                                 user_id=10 + n) for n in range(people)])
        conn.execute(insert(Participant.__table__),
                     [dict(id=1 + n, event_id=EVENT_ID, user_id=10 + n, role="participant", vm_id=1 + n)
                      for n in range(people)]
                     + [dict(id=people + 1, event_id=EVENT_ID, user_id=2, role="teacher", vm_id=None)])
        # The event's deploy: orchestrator, then per participant a chain of four, once: course, enrol, marker.
        at = now - 86400
        deploy_id = 1
        rows = [_task(deploy_id, "event.deploy", "core_periodic", f"event:{EVENT_ID}", "success", at,
                      requested_by="user:bench-teacher", event_id=EVENT_ID)]
        deps = []
        failed = set(rng.sample(range(people), 3))
        next_id = 2
        for n in range(people):
            previous = None
            broken = False
            for stage, operation, queue in STAGES:
                status = "cancelled" if broken else ("error" if n in failed and stage == "access" else "success")
                broken = broken or status == "error"
                rows.append(_task(next_id, operation, queue, f"event:{EVENT_ID}/participant:{1 + n}/{stage}", status,
                                  at, requested_by=f"task:{deploy_id}", event_id=EVENT_ID,
                                  vm_id=1 + n if queue.startswith("pve_vm") or stage == "access" else None))
                if previous:
                    deps.append(dict(task_id=next_id, depends_on_id=previous))
                previous = next_id
                next_id += 1
        for stage, operation, queue in [("course", "event.course", "moodle"), ("enrol", "event.enrol", "moodle"),
                                        ("deployed", "event.mark_deployed", "core_periodic")]:
            rows.append(_task(next_id, operation, queue, f"event:{EVENT_ID}/{stage}",
                              "cancelled" if stage == "deployed" else "success", at,
                              requested_by=f"task:{deploy_id}", event_id=EVENT_ID))
            next_id += 1
        event_tasks = len(rows)
        statuses = [s for s, weight in STATUSES for _ in range(weight)]
        queues = list(QUEUES)
        for task_id in range(next_id, count + 1):
            queue = rng.choice(queues)
            status = rng.choice(statuses)
            at = now - (count - task_id) * (30 * 86400 / count)
            event = rng.randint(2, 401) if queue != "pve_periodic" else None
            target = f"event:{event}/participant:{rng.randint(1, 9999)}/clone" if event else "periodic:node-sync"
            rows.append(_task(task_id, QUEUES[queue], queue, target, status, at,
                              requested_by=f"task:{rng.randint(1, 5000)}", event_id=event,
                              vm_id=task_id if queue.startswith("pve_vm") else None))
        for first in range(0, len(rows), 5000):
            chunk = rows[first:first + 5000]
            conn.execute(insert(Task.__table__), chunk)
            conn.execute(insert(SubTask.__table__), [
                dict(task_id=r["id"], attempt=1, status="success" if r["status"] == "success" else "error",
                     error=r["error"] if r["status"] == "error" else None, worker="worker@bench.1",
                     started_at=r["created_at"], finished_at=r["created_at"]) for r in chunk])
        conn.execute(insert(TaskDependency.__table__), deps)
    with engine.connect() as conn:
        errors = [r[0] for r in conn.execute(text("SELECT id FROM tasks WHERE status = 'error' ORDER BY id"))]
    engine.dispose()
    os.environ["DATABASE_URL"] = url
    db_engine.configure(url)
    cookie, _ = open_session(1, "127.0.0.1")
    db_engine.get_engine().dispose()
    return {"seconds": time.monotonic() - started, "error_ids": errors, "event_tasks": event_tasks,
            "cookie": (COOKIE, cookie)}


def pages(count: int, error_ids: list[int]) -> dict[str, tuple[str, dict]]:
    deep = count // 10  # a page ~90% of the way down the list, reached by its keyset cursor
    return {
        "event page (200 participants)": (f"/events/{EVENT_ID}", {}),
        "tasks page": ("/tasks", {}),
        "tasks page, status=error": ("/tasks", {"status": "error"}),
        "tasks page, the event's": ("/tasks", {"event_id": EVENT_ID}),
        "tasks page, operation=vm.clone": ("/tasks", {"operation": "vm.clone"}),
        "tasks page, deep": ("/tasks", {"before": deep}),
        "one Task's page": (f"/tasks/{error_ids[len(error_ids) // 2]}", {}),
    }


def measure(base: str, cookie: tuple[str, str], table: dict[str, tuple[str, dict]], rounds: int,
            warmup: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each page in turn, one request at a time; a page that is not there (404) is reported, not timed."""
    timings: dict[str, list[float]] = {name: [] for name in table}
    missing: dict[str, str] = {}
    with httpx.Client(base_url=base, cookies={cookie[0]: cookie[1]}, timeout=30) as client:
        for number in range(warmup + rounds):
            for name, (path, params) in table.items():
                if name in missing:
                    continue
                began = time.perf_counter()
                response = client.get(path, params=params)
                took = (time.perf_counter() - began) * 1000
                if response.status_code == 404 and number == 0:
                    missing[name] = f"{path} answered 404 (no such page in this build)"
                    continue
                if response.status_code != 200 or "<html" not in response.text[:500].lower():
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
                if number >= warmup:
                    timings[name].append(took)
    return {k: v for k, v in timings.items() if v}, missing


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=60, help="requests of each page that are timed")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    with bench_database(DATABASE, REDIS_URL) as url:
        filled = fill(url, args.tasks, args.participants)
        print(f"filled {args.tasks} Tasks (and their attempts) in {filled['seconds']:.1f}s: an event of "
              f"{args.participants} participants with {filled['event_tasks']} Tasks, {len(filled['error_ids'])} "
              "failed Tasks in all", flush=True)
        with running_backend(url, REDIS_URL, "bench-pages-backend.log") as base:
            print(f"one backend process, an admin's session, one request at a time, {args.rounds} of each page "
                  f"(after {args.warmup} untimed):", flush=True)
            timings, missing = measure(base, filled["cookie"], pages(args.tasks, filled["error_ids"]),
                                       args.rounds, args.warmup)

    width = max(len(name) for name in [*timings, *missing])
    print(f"\n{'page':<{width}}  {'n':>4}  {'p50 ms':>7}  {'p95 ms':>7}")
    for name, values in timings.items():
        print(f"{name:<{width}}  {len(values):>4}  {percentile(values, 50):>7.1f}  {percentile(values, 95):>7.1f}")
    for name, why in missing.items():
        print(f"{name:<{width}}  not measured: {why}")
    for name in ("event page (200 participants)", "tasks page"):
        if name in timings:
            p95 = percentile(timings[name], 95)
            print(f"{name}: p95 {p95:.0f} ms (goal: under 300 ms): {'met' if p95 < 300 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
