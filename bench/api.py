"""make bench-api: the API's task list against a big table, as many people look at once.

Fills MariaDB (database openvle_bench_api, dropped after) with --tasks Tasks (each with an attempt),
starts the backend role as its own process (as compose runs it), and has --clients concurrent
clients ask, in one run and interleaved: /healthz, the task list's first page, a deep keyset page,
the list filtered by status (first and deep page) and one Task with its attempts. Prints p50 and p99
of each, and the task list's p99 against /healthz's (goal: at most 3x).

    .venv/bin/python bench/api.py [--tasks 100000] [--clients 32] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid

import httpx
from sqlalchemy import create_engine, insert, text

from backend import ROOT, bench_database, running_backend

DATABASE = "openvle_bench_api"
REDIS_URL = os.environ.get("OPENVLE_BENCH_REDIS", "redis://127.0.0.1:6379/9")
STATUSES = [("success", 85), ("error", 5), ("cancelled", 3), ("queued", 5), ("processing", 2)]
QUEUES = ["pve_vm_clone", "pve_vm_actions", "mails", "guacamole", "moodle", "core_periodic", "pve_periodic"]
OPERATIONS = {"pve_vm_clone": "vm.clone", "pve_vm_actions": "vm.start", "mails": "mail.send",
              "guacamole": "guac.provision", "moodle": "event.enrol", "core_periodic": "event.deploy",
              "pve_periodic": "nodes.sync"}
PAGE = 50


def fill(url: str, count: int) -> dict:
    """Tasks over the last 30 days, newest with the highest ids, as the system makes them."""
    sys.path.insert(0, str(ROOT / "services"))
    from openvle.db.models import SubTask, Task

    engine = create_engine(url)
    rng = random.Random(7)
    statuses = [s for s, weight in STATUSES for _ in range(weight)]
    now = time.time()
    started = time.monotonic()
    with engine.begin() as conn:
        for first in range(1, count + 1, 5000):
            rows, attempts = [], []
            for task_id in range(first, min(first + 5000, count + 1)):
                queue = rng.choice(QUEUES)
                status = rng.choice(statuses)
                at = now - (count - task_id) * (30 * 86400 / count)
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
                event = rng.randint(1, 400) if queue != "pve_periodic" else None
                rows.append(dict(id=task_id, operation=OPERATIONS[queue], target=f"event:{event}/participant:"
                                 f"{rng.randint(1, 9999)}/clone" if event else "periodic:node-sync", queue=queue,
                                 params={"vm_id": task_id}, status=status, progress=100 if status == "success" else 0,
                                 attempts=1, max_attempts=6, requested_by=f"task:{rng.randint(1, 5000)}",
                                 event_id=event, vm_id=task_id if queue.startswith("pve_vm") else None,
                                 rq_job_id=uuid.uuid4().hex, created_at=created, updated_at=created,
                                 error="ProxmoxError: boom" if status == "error" else None))
                attempts.append(dict(task_id=task_id, attempt=1, status="success" if status == "success" else
                                     "error", worker="worker@bench.1", started_at=created, finished_at=created))
            conn.execute(insert(Task.__table__), rows)
            conn.execute(insert(SubTask.__table__), attempts)
    with engine.connect() as conn:
        errors = [r[0] for r in conn.execute(text("SELECT id FROM tasks WHERE status = 'error' ORDER BY id"))]
    engine.dispose()
    return {"seconds": time.monotonic() - started, "error_ids": errors}


def admin_token(url: str) -> str:
    sys.path.insert(0, str(ROOT / "services"))
    os.environ["DATABASE_URL"] = url
    from openvle.accounts.tokens import create_token
    from openvle.accounts.users import create_user
    from openvle.db import engine

    engine.configure(url)
    user_id = create_user("bench-admin", "bench-admin@openvle.test", "admin")
    return create_token(user_id, "bench")[1]


def kinds(count: int, error_ids: list[int]) -> dict[str, tuple[str, dict]]:
    deep = count // 10  # a page ~90% of the way down the list, reached by its keyset cursor
    deep_error = error_ids[len(error_ids) // 10]
    return {
        "healthz": ("/healthz", {}),
        "tasks, first page": ("/api/tasks", {"limit": PAGE}),
        "tasks, deep page": ("/api/tasks", {"limit": PAGE, "before": deep}),
        "tasks, status=error": ("/api/tasks", {"limit": PAGE, "status": "error"}),
        "tasks, status=error deep": ("/api/tasks", {"limit": PAGE, "status": "error", "before": deep_error}),
        "one task": ("/api/tasks/{id}", {}),
    }


async def load(base: str, token: str, clients: int, seconds: float, warmup: float, count: int,
               error_ids: list[int]) -> dict[str, list[float]]:
    table = kinds(count, error_ids)
    names = list(table)
    timings: dict[str, list[float]] = {name: [] for name in names}
    stop_at = time.monotonic() + warmup + seconds
    measure_from = time.monotonic() + warmup
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                 limits=limits) as client:

        async def one_client(number: int) -> None:
            rng = random.Random(number)
            turn = number
            while time.monotonic() < stop_at:
                name = names[turn % len(names)]
                turn += 1
                path, params = table[name]
                if "{id}" in path:
                    path = path.format(id=rng.randint(1, count))
                asked_at = time.monotonic()
                began = time.perf_counter()
                response = await client.get(path, params=params)
                took = time.perf_counter() - began
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
                if asked_at >= measure_from:  # the warm-up fills caches and pools: not counted
                    timings[name].append(took * 1000)

        await asyncio.gather(*(one_client(n) for n in range(clients)))
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time, after a warm-up")
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()

    with bench_database(DATABASE, REDIS_URL) as url:
        filled = fill(url, args.tasks)
        token = admin_token(url)
        print(f"filled {args.tasks} Tasks (and their attempts) in {filled['seconds']:.1f}s; "
              f"{len(filled['error_ids'])} failed ones", flush=True)
        with running_backend(url, REDIS_URL, "bench-api-backend.log") as base:
            print(f"{args.clients} clients for {args.seconds:.0f}s (after {args.warmup:.0f}s warm-up), one backend "
                  "process, interleaved requests:", flush=True)
            timings = asyncio.run(load(base, token, args.clients, args.seconds, args.warmup, args.tasks,
                                       filled["error_ids"]))

    width = max(len(name) for name in timings)
    print(f"\n{'request':<{width}}  {'n':>6}  {'p50 ms':>8}  {'p99 ms':>8}")
    for name, values in timings.items():
        print(f"{name:<{width}}  {len(values):>6}  {percentile(values, 50):>8.1f}  {percentile(values, 99):>8.1f}")
    health = percentile(timings["healthz"], 99)
    lists = [name for name in timings if name.startswith("tasks")]
    worst = max(lists, key=lambda name: percentile(timings[name], 99))
    ratio = percentile(timings[worst], 99) / health
    total = sum(len(v) for v in timings.values())
    print(f"\nthroughput {total / args.seconds:.0f} requests/s; slowest task list p99 ({worst}) = {ratio:.2f} x "
          f"/healthz p99 (goal: at most 3): {'met' if ratio <= 3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
