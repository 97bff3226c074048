"""What a student waits for when they click start, stop or reset while a big deploy floods the workers.

It runs bench/events.py's deploy (N participants, real role processes, MariaDB, Redis db 13, the
simulators) and, beside it, a backend role process and a "clicker": a small event of --vms VMs is
deployed first, then, while the big deploy runs, the clicker asks the backend (HTTP, an admin's API
token) to stop, start or reset one of those VMs every --every seconds, and polls the Task until it
settles; then the big event is archived (its Guacamole steps are all queued at once) and the clicker
goes on. It prints, for the clicks made while the deploy ran and while the archive ran:

  settled  POST /api/vms/{id}/{action} until the Task is final (its finished_at: from then on the backend
           answers with the end), p50/p95/p99/max; the clicker's own polling is not in it (`seen` below)
  waited   Task created until its first attempt started (time spent behind other jobs in the queues)
  proxmox  the simulator's own time for the action (its record of the Proxmox task the click made;
           0 when the VM was already as asked), excluded from the goal
  beyond   settled - proxmox: what the system adds (goal: p99 <= 2 s)

and where `beyond` goes, each part from the clocks of the process that did it (one machine, one
wall clock): the backend's answer, the enqueue, the wait in the queue, the job's own steps before
and after Proxmox's task, the worker's close of the attempt, and the clicker's own polling (it asks
every --poll seconds, so `seen` is bounded by that plus one GET).

    python bench/clicks.py [--participants 200] [--clone-seconds 2] [--every 1] [--vms 4]

Uses database openvle_bench_events and Redis db 13 like bench/events.py, and cleans up the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import events as deploys  # noqa: E402  (bench/events.py: stores, simulators, role processes)

ACTIONS = ("stop", "start", "reset")
FINAL = ("success", "error", "cancelled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200, help="size of the deploy that floods the workers")
    parser.add_argument("--clone-seconds", type=float, default=2.0, help="Proxmox linked clone duration")
    parser.add_argument("--concurrency", type=int, default=4, help="PVE_CLONE_CONCURRENCY")
    parser.add_argument("--workers", type=int, default=4, help="replicas of the `worker` role (compose: 4)")
    parser.add_argument("--clone-workers", type=int, default=1, help="replicas of `worker-vm-clone`")
    parser.add_argument("--clone-watcher", action=argparse.BooleanOptionalAction, default=True,
                        help="PVE_CLONE_WATCHER (clone_watch.py; on by default, as in the product)")
    parser.add_argument("--poll-interval", type=int, default=3, help="PVE_POLL_INTERVAL (3 is the default setting)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two clicks")
    parser.add_argument("--vms", type=int, default=4, help="VMs the clicker acts on (a small event deployed first)")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between the clicker's looks at its Task")
    parser.add_argument("--timeout", type=float, default=0)
    parser.add_argument("--db", default="mysql+pymysql://root@127.0.0.1:3306/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--log-level", default="WARNING", help="the roles' LOG_LEVEL (INFO shows RQ's own lines)")
    args = parser.parse_args()
    args.sizes = str(args.participants)

    bench = ClickBench(args)
    ok = False
    try:
        bench.setup()
        result = bench.run(args.participants)
        ok = result["status"] == "deployed" and bool(bench.clicks)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
    finally:
        bench.stop_clicker()
        bench.cleanup(keep_logs=args.keep_logs or not ok)
    print_clicks(args, bench)
    return 0 if ok else 1


class ClickBench(deploys.Bench):
    """The deploy benchmark, with a backend and a clicker started once the workers are up."""

    def __init__(self, args):
        super().__init__(args)
        self.clicks: list[dict] = []
        self.stop_clicking = threading.Event()
        self.phase: str | None = None  # "deploy" or "archive" while that runs: the clicks counted
        self.clicker: threading.Thread | None = None
        self.backend: deploys.Role | None = None
        self.archive_seconds = float("nan")

    def start_workers(self, n: int) -> None:
        super().start_workers(n)
        vm_ids = self.deploy_click_targets()
        token = self.admin_token()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICE_", "QUEUE_", "WORKER_"))}
        env.update(self.env, PYTHONUNBUFFERED="1", BACKEND_MIGRATE_ON_START="false", BACKEND_PORT=str(port))
        self.backend = deploys.Role("backend", env, self.logs / "backend.log")
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60, "the backend to answer")
        self.clicker = threading.Thread(target=self.click, args=(base, token, vm_ids), daemon=True)
        self.clicker.start()
        self.phase = "deploy"  # run() requests the big deploy right after this returns

    def deploy_click_targets(self) -> list[int]:
        """A small event deployed before the flood: the VMs the clicker acts on."""
        from sqlalchemy import select

        from openvle.db.engine import session_scope
        from openvle.db.models import Vm, utcnow
        from openvle.lab_events import create_event, create_template, request_deploy

        template = create_template("clicks", pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
        start = utcnow() + dt.timedelta(days=3)
        people = [{"username": f"clicker{i}", "email": f"clicker{i}@uni.example", "first_name": "Click",
                   "last_name": f"{i}"} for i in range(1, self.args.vms + 1)]
        teacher = [{"username": "teacher01", "email": "teacher01@uni.example", "first_name": "Teacher",
                    "last_name": "01"}]
        event_id = create_event("Clicks", template, start, start + dt.timedelta(days=1), participants_=people,
                                teachers=teacher)
        request_deploy(event_id, requested_by="bench")

        wait_until(lambda: event_settled_as(event_id, "deployed"), 120, "the clicker's small event to deploy")
        with session_scope() as session:
            return list(session.scalars(select(Vm.id).where(Vm.event_id == event_id).order_by(Vm.id)))

    def admin_token(self) -> str:
        from openvle.accounts.tokens import create_token
        from openvle.accounts.users import create_user

        user_id = create_user("bench-admin", "bench-admin@uni.example", role="admin")
        return create_token(user_id, "clicks")[1]

    def click(self, base: str, token: str, vm_ids: list[int]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        vmids = self.vmids_of(vm_ids)
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            i = 0
            while not self.stop_clicking.wait(self.args.every):
                phase = self.phase
                vm_id, action = vm_ids[i % len(vm_ids)], ACTIONS[(i // len(vm_ids)) % len(ACTIONS)]
                i += 1
                posted = time.time()
                answer = client.post(f"/api/vms/{vm_id}/{action}")
                answered = time.time()
                if answer.status_code != 202:
                    self.clicks.append({"action": action, "error": f"{answer.status_code} {answer.text[:200]}"})
                    continue
                task_id = answer.json()["task"]["id"]
                while True:
                    task = client.get(f"/api/tasks/{task_id}").json()
                    if task["status"] in FINAL:
                        break
                    if self.stop_clicking.is_set():
                        return  # the run is over: this click is not counted either way
                    time.sleep(self.args.poll)
                seen = time.time()
                started = task.get("started_at")  # the first attempt's start
                waited = to_ts(started) - to_ts(task["created_at"]) if started else float("nan")
                click = {"action": action, "status": task["status"], "waited": waited,
                         "phase": phase, "posted": posted, "answered": answered, "seen": seen}
                click.update(self.timeline(task_id, vmids[vm_id], posted, seen))
                click["settled"] = click["closed"] - posted  # not the clicker's poll: printed as `seen`
                self.clicks.append(click)

    def vmids_of(self, vm_ids: list[int]) -> dict[int, int]:
        from sqlalchemy import select

        from openvle.db.engine import session_scope
        from openvle.db.models import Vm

        with session_scope() as session:
            return dict(session.execute(select(Vm.id, Vm.vmid).where(Vm.id.in_(vm_ids))).all())

    def timeline(self, task_id: int, vmid: int, posted: float, seen: float) -> dict:
        """When each part of one click happened, from the record of whoever did it: the Task row (backend,
        worker), RQ's job hash (the work horse) and the Proxmox simulator's own task record."""
        from rq.job import Job
        from sqlalchemy import select

        from openvle.db.engine import session_scope
        from openvle.db.models import Task

        with session_scope() as session:
            row = session.execute(select(Task.created_at, Task.started_at, Task.finished_at, Task.rq_job_id)
                                  .where(Task.id == task_id)).one()
        job = Job.fetch(row.rq_job_id, connection=self.redis)
        pve = [t for t in list(self.clone_log) if t["id"] == str(vmid) and posted <= t["start"] <= seen
               and t["type"] in ("qmstart", "qmstop", "qmshutdown", "qmreset")]
        out = {"created": wall(row.created_at), "opened": wall(row.started_at), "closed": wall(row.finished_at),
               "enqueued": wall(job.enqueued_at), "horse_started": wall(job.started_at),
               "horse_ended": wall(job.ended_at), "proxmox": 0.0}
        if pve:
            out.update(pve_start=pve[-1]["start"], pve_end=pve[-1]["start"] + pve[-1]["duration"],
                       proxmox=pve[-1]["duration"])
        return out

    def stop_workers(self) -> None:
        """run() calls this once the deploy settled: archive the big event with the clicker still going."""
        if self.phase == "deploy":
            self.phase = None
            self.archive_big_event()
        self.phase = None
        self.stop_clicker()
        super().stop_workers()

    def archive_big_event(self) -> None:
        from sqlalchemy import select

        from openvle.db.engine import session_scope
        from openvle.db.models import Event
        from openvle.lab_events import request_archive

        with session_scope() as session:
            event_id = session.scalar(select(Event.id).where(Event.name == f"Bench {self.args.participants}"))
        t0 = time.monotonic()
        self.phase = "archive"
        request_archive(event_id, requested_by="bench")

        wait_until(lambda: event_settled_as(event_id, "archived"), 1800, "the big event to be archived")
        self.archive_seconds = time.monotonic() - t0

    def stop_clicker(self) -> None:
        self.stop_clicking.set()
        if self.clicker is not None:
            self.clicker.join(timeout=60)
            self.clicker = None
        if self.backend is not None:
            self.backend.signal()
            self.backend.wait()
            self.backend = None


def print_clicks(args, bench: ClickBench) -> None:
    failed = [c for c in bench.clicks if c.get("error") or c.get("status") not in (None, "success")]
    print(f"\nclicks while {args.participants} participants deployed, then archived ({args.workers} x worker, "
          f"clone {args.clone_seconds:g} s, PVE_POLL_INTERVAL={args.poll_interval}, one click every {args.every:g} s "
          f"on {args.vms} VMs): {len(bench.clicks)} made, {len(failed)} not successful")
    for c in failed[:5]:
        print(f"  not successful: {c}")
    for phase in ("deploy", "archive"):
        good = [c for c in bench.clicks if c.get("phase") == phase and c.get("status") == "success"]
        if not good:
            continue
        print(f"during the {phase} ({len(good)} clicks)"
              + (f", which took {bench.archive_seconds:.1f} s" if phase == "archive" else "")
              + f":\n{'':>10} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7}")
        for name, values in (("settled", [c["settled"] for c in good]),
                             ("waited", [c["waited"] for c in good if c["waited"] == c["waited"]]),
                             ("proxmox", [c["proxmox"] for c in good]),
                             ("beyond", [c["settled"] - c["proxmox"] for c in good])):
            print(f"{name:>10} " + " ".join(f"{q:>7.2f}" for q in quantiles(values)))
        print("  where `beyond` goes (each part, p50/p95/p99/max s):")
        for name, start, end, what in PARTS:
            values = [c[end] - c[start] for c in good if c.get(start) and c.get(end)]
            if values:
                print(f"{name:>10} " + " ".join(f"{q:>7.2f}" for q in quantiles(values)) + f"   {what}")
    print("goal: beyond (settled minus the simulator's own action time) p99 <= 2 s")


# The parts of a click between the POST and the clicker seeing its Task final, in order.
PARTS = (
    ("answer", "posted", "answered", "backend: POST until its answer (Task row, enqueue)"),
    ("enqueue", "created", "enqueued", "Task row made -> job in RQ's queue"),
    ("queue", "enqueued", "opened", "in the queue -> a worker took it and opened the attempt"),
    ("fork", "opened", "horse_started", "attempt opened -> the work horse starts the job"),
    ("to_pve", "horse_started", "pve_start", "job start -> Proxmox task started (reads, then the call)"),
    ("pve", "pve_start", "pve_end", "Proxmox's own time (excluded from beyond)"),
    ("notice", "pve_end", "horse_ended", "Proxmox task over -> the job returns (watch interval, last reads)"),
    ("close", "horse_ended", "closed", "job returned -> Task final (horse exits, worker closes the attempt)"),
    ("seen", "closed", "seen", "Task final -> the clicker sees it (not in settled: one GET + --poll, twice at most)"),
)


def wall(value) -> float | None:
    """A UTC timestamp (naive from the DB, aware from RQ) as seconds since the epoch."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def quantiles(values: list[float]) -> tuple[float, float, float, float]:
    ordered = sorted(values)
    if len(ordered) == 1:
        return (ordered[0],) * 4
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return statistics.median(ordered), cuts[94], cuts[98], ordered[-1]


def event_settled_as(event_id: int, status: str) -> bool:
    from openvle.db.engine import session_scope
    from openvle.db.models import Event

    with session_scope() as session:
        event = session.get(Event, event_id)
        return event.status == status and event.active_task_id is None


def to_ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {seconds:g} s waiting for {what}")


if __name__ == "__main__":
    raise SystemExit(main())
