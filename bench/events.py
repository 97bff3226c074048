"""Whole-event deploys against the sandbox simulators: how close to the hypervisor's limit, and how many
DB statements per participant.

For each size it deploys one event of N participants (clone -> start -> access -> email each, plus the
Moodle course and enrolment once) with the worker roles as separate processes, exactly as compose runs
them (`--workers` x `worker`, `--clone-workers` x `worker-vm-clone`), against in-process simulators of
Proxmox (clone time --clone-seconds, template 9001 on shared Ceph storage so clones may go to any of the
3 nodes),
Guacamole, Moodle and SMTP, on this machine's MariaDB and Redis. It prints per size:

  wall    request_deploy() until the Event row is deployed (or with failures) and released
  limit   what a perfect scheduler cannot beat: ceil(N / C) x clone time, then the longest chain after the
          last clone: start (the simulator's configured duration) + access + email (median run times
          measured from this run's Task rows). C is the effective clone concurrency: slots are per node
          AND per template (openvle/pacing.py), so with one template C = PVE_CLONE_CONCURRENCY whatever
          the number of nodes. The Moodle chain (course + enrol + email, measured) is taken instead when
          it is longer.
  ratio   wall / limit (target <= 1.15 at 200)
  stmts/p statements the system sent to MariaDB during the deploy, per participant (target: flat).
          Counted per DB user (MariaDB userstat, a throw-away user the whole system runs as), so other
          clients on the server add nothing; the server-wide `Questions` delta is printed beside it.
  Redis   peak Redis memory during the deploy above where it started, per participant (KiB)
  worker  the largest peak resident set of one worker or work horse process (MiB)

and a breakdown of where the time went, from the Task rows' timestamps and the Proxmox simulator's
own record of when each clone task ran.

    python bench/events.py [--sizes 10,100,200] [--clone-seconds 2] [--concurrency 4] [--workers 4]
                           [--clone-workers 1]

Uses database openvle_bench_events (created and dropped) and Redis db 13 (flushed before and after);
every process, the database, the user, the Redis db and the userstat setting are cleaned up on exit,
Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

DB_NAME = "openvle_bench_events"
DB_USER = "openvle_bench"
SETTLED = ("deployed", "deployed_with_failures")
STALL_AFTER = 60  # s after the last step finished: RQ enqueues a job whose dependencies are met within ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,200", help="participants per event, comma-separated")
    parser.add_argument("--clone-seconds", type=float, default=2.0, help="Proxmox linked clone duration")
    parser.add_argument("--concurrency", type=int, default=4, help="PVE_CLONE_CONCURRENCY")
    parser.add_argument("--workers", type=int, default=4, help="replicas of the `worker` role (compose: 4)")
    parser.add_argument("--poll-interval", type=int, default=1, help="PVE_POLL_INTERVAL")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per deploy (0: 10 x the limit, >= 300)")
    parser.add_argument("--db", default="mysql+pymysql://root@127.0.0.1:3306/", help="admin server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--clone-workers", type=int, default=1,
                        help="replicas of `worker-vm-clone` (compose: 1; clone pacing holds across replicas)")
    parser.add_argument("--clone-watcher", action=argparse.BooleanOptionalAction, default=True,
                        help="PVE_CLONE_WATCHER (clone_watch.py; on by default, as in the product)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs (printed path)")
    parser.add_argument("--log-level", default="WARNING", help="the roles' LOG_LEVEL (INFO shows RQ's own lines)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    def terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(args)
    results = []
    ok = False
    try:
        bench.setup()
        for n in sizes:
            results.append(bench.run(n))
        ok = all(r["status"] == "deployed" for r in results)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
    finally:
        bench.cleanup(keep_logs=args.keep_logs or not ok)
    if results:
        print_table(args, results)
    return 0 if ok else 1


class Bench:
    def __init__(self, args):
        self.args = args
        self.admin = None
        self.sims: dict = {}
        self.workers: list[Role] = []
        self.logs = Path(tempfile.mkdtemp(prefix="openvle-bench-events-"))
        self.userstat_before = None
        self.user_made = False
        self.redis = None
        self.clone_log: list[dict] = []
        self.start_failures: list[str] = []

    # --- stores, simulators, roles ------------------------------------------------------------------

    def setup(self) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        self.admin = create_engine(self.args.db, pool_size=2)
        password = secrets.token_hex(12)
        server = make_url(self.args.db)
        with self.admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME}"))
            conn.execute(text(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            host = server.host or "localhost"
            try:  # the system runs as its own user, so its statements can be told from other clients'
                self.userstat_before = conn.execute(text("SELECT @@global.userstat")).scalar()
                conn.execute(text(f"DROP USER IF EXISTS '{DB_USER}'@'{host}'"))
                conn.execute(text(f"CREATE USER '{DB_USER}'@'{host}' IDENTIFIED BY '{password}'"))
                conn.execute(text(f"GRANT ALL PRIVILEGES ON {DB_NAME}.* TO '{DB_USER}'@'{host}'"))
                self.user_made = True
                conn.execute(text("SET GLOBAL userstat = 1"))
            except Exception as exc:  # no userstat or no GRANT: fall back to the server-wide count
                print(f"note: cannot count per user ({type(exc).__name__}); using server-wide Questions only")
                self.userstat_before = None
        if self.user_made:
            self.database_url = server.set(username=DB_USER, password=password, database=DB_NAME) \
                .render_as_string(hide_password=False)
        else:
            self.database_url = server.set(database=DB_NAME).render_as_string(hide_password=False)
        self.db_host = server.host or "localhost"

        from redis import Redis

        self.redis = Redis.from_url(self.args.redis)
        self.redis.flushdb()

        from sandbox.guacamole import GuacamoleSimulator
        from sandbox.mail import MailCatcher
        from sandbox.moodle import MoodleSimulator
        from sandbox.proxmox import ProxmoxSimulator

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        token = str(uuid.uuid4())
        self.sims["pve"] = ProxmoxSimulator(host="127.0.0.1", port=0, user="openvle@pve", token_name="bench",
                                            token_value=token, auth_fail_delay=0).start()
        self.sims["guac"] = GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin",
                                               password="guac-bench-1").start()
        self.sims["moodle"] = MoodleSimulator(host="127.0.0.1", port=0, token="moodle-bench-token-1").start()
        self.sims["mail"] = MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0).start()
        pve = self.sims["pve"]
        record = self.clone_log
        original = pve.state.start_task

        def recording_start_task(node, type_, id_, user, duration, **kw):  # when each Proxmox task ran
            record.append({"type": type_, "node": node, "id": id_, "start": time.time(), "duration": duration,
                           "error": kw.get("error"), "newid": (kw.get("meta") or {}).get("newid")})
            return original(node, type_, id_, user, duration, **kw)

        pve.state.start_task = recording_start_task
        self.env = {
            "REDIS_URL": self.args.redis, "DATABASE_URL": self.database_url, "LOG_LEVEL": self.args.log_level,
            "SECRET_KEY": secrets.token_urlsafe(32),  # a throwaway key: the database is dropped after the run
            "PVE_HOST": "127.0.0.1", "PVE_PORT": str(pve.port), "PVE_USER": "openvle@pve", "PVE_TOKEN_NAME": "bench",
            "PVE_TOKEN_VALUE": token, "PVE_VERIFY_SSL": pve.ca_path,
            "PVE_POLL_INTERVAL": str(self.args.poll_interval), "PVE_CLONE_CONCURRENCY": str(self.args.concurrency),
            "PVE_CLONE_WATCHER": "true" if self.args.clone_watcher else "false",
            "GUACAMOLE_URL": self.sims["guac"].url, "GUACAMOLE_USER": "guacadmin",
            "GUACAMOLE_PASSWORD": "guac-bench-1",
            "MOODLE_URL": self.sims["moodle"].url, "MOODLE_TOKEN": "moodle-bench-token-1", "MOODLE_CATEGORY_ID": "2",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.sims["mail"].smtp_port), "SMTP_TLS": "none",
            "MAIL_FROM": "OpenVLE <lab@openvle.test>",
        }
        for key in [k for k in os.environ if k.startswith(("SERVICE_", "QUEUE_", "WORKER_"))]:
            del os.environ[key]
        os.environ.update(self.env)
        from openvle import logs

        logs.setup("bench", "WARNING")
        logging.getLogger("rq").setLevel(logging.WARNING)

    def fresh(self) -> None:
        """Empty database at head, empty Redis db, reset simulators: every size starts alike."""
        from sqlalchemy import text

        from openvle.db import engine
        from openvle.db.schema import upgrade
        from openvle.settings import get_settings

        with self.admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME}"))
            conn.execute(text(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
        self.redis.flushdb()
        get_settings.cache_clear()
        upgrade(engine.configure(get_settings().DATABASE_URL))  # `openvle migrate`

        from sandbox.runner import seed_proxmox

        pve = self.sims["pve"]
        pve.state.reset()
        seed_proxmox(pve.state)
        # Storage lock contention never fails a clone here: the pacing under test is ours.
        pve.state.configure(durations={"linked_clone": self.args.clone_seconds},
                            storage_concurrency=max(64, 4 * self.args.concurrency))
        self.sims["guac"].state.reset()
        self.sims["moodle"].state.reset()
        self.sims["moodle"].state.seed()
        self.sims["mail"].state.reset()
        self.clone_log.clear()

    def start_workers(self, n: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICE_", "QUEUE_", "WORKER_"))}
        env.update(self.env, PYTHONUNBUFFERED="1", BACKEND_MIGRATE_ON_START="false")
        roles = ["worker"] * self.args.workers + ["worker-vm-clone"] * self.args.clone_workers
        for role in roles:  # all at once, as compose starts its replicas
            self.workers.append(Role(role, env, self.logs / f"{n}-{role}-{len(self.workers)}.log"))
        from rq import Worker

        deadline = time.monotonic() + 60
        while True:
            names = {w.name.rsplit(".", 1)[-1] for w in Worker.all(connection=self.redis)}
            if all(str(w.proc.pid) in names for w in self.workers):
                return
            for i, w in enumerate(self.workers):
                if w.proc.poll() is not None:  # compose's `restart: unless-stopped` starts it again
                    why = (w.output().strip().splitlines() or ["(no output)"])[-1]
                    self.start_failures.append(why)
                    if len(self.start_failures) > 10:
                        raise RuntimeError(f"{w.role} keeps exiting at start: {why}")
                    print(f"  {w.role} exited at start (restarted, as compose would): {why}", flush=True)
                    w.wait()
                    self.workers[i] = Role(w.role, env, self.logs / f"{n}-{w.role}-{i}-again.log")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register within 60 s")
            time.sleep(0.2)

    def check_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"{w.role} exited with {w.proc.returncode}:\n{w.output()[-3000:]}")

    def stop_workers(self) -> None:
        for w in self.workers:
            w.signal()
        for w in self.workers:
            w.wait()
        self.workers = []

    def statements(self) -> dict:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            questions = int(conn.execute(text("SHOW GLOBAL STATUS LIKE 'Questions'")).first()[1])
            row = None
            if self.user_made:
                row = conn.execute(text(
                    "SELECT SELECT_COMMANDS, UPDATE_COMMANDS, OTHER_COMMANDS, COMMIT_TRANSACTIONS, "
                    "ROLLBACK_TRANSACTIONS, TOTAL_CONNECTIONS FROM information_schema.USER_STATISTICS "
                    "WHERE USER = :u"), {"u": DB_USER}).first()
        out = {"questions": questions}
        if self.user_made:
            row = row or (0, 0, 0, 0, 0, 0)
            out.update(select=int(row[0]), update=int(row[1]), other=int(row[2]), commits=int(row[3]),
                       rollbacks=int(row[4]), connections=int(row[5]))
        return out

    # --- one deploy ---------------------------------------------------------------------------------

    def run(self, n: int) -> dict:
        from sqlalchemy import text

        from openvle.db.models import utcnow
        from openvle.lab_events import create_event, create_template, request_deploy

        print(f"\n=== {n} participants: preparing stores, simulators and "
              f"{self.args.workers} x worker + {self.args.clone_workers} x worker-vm-clone", flush=True)
        self.fresh()
        self.start_workers(n)
        template = create_template("ubuntu-shared", pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
        start = utcnow() + dt.timedelta(days=3)
        people = [{"username": f"student{i:03d}", "email": f"student{i:03d}@uni.example", "first_name": "Student",
                   "last_name": f"{i:03d}"} for i in range(1, n + 1)]
        teachers = [{"username": "teacher01", "email": "teacher01@uni.example", "first_name": "Teacher",
                     "last_name": "01"}]
        event_id = create_event(f"Bench {n}", template, start, start + dt.timedelta(days=1), participants_=people,
                                teachers=teachers)
        clone_s = self.args.clone_seconds
        waves = math.ceil(n / self.args.concurrency)
        timeout = self.args.timeout or max(300.0, 10 * (waves * clone_s + 10))

        before = self.statements()
        memory = Footprint(self.redis, self.workers)
        t0 = time.time()
        request_deploy(event_id, requested_by="bench")
        settled_at, status, reason = None, None, None
        poll = f"SELECT status, active_task_id, status_reason FROM {DB_NAME}.events WHERE id = :id"
        last_report = last_stall_check = t0
        steps_open = (f"SELECT COUNT(*), MAX(finished_at) FROM {DB_NAME}.tasks WHERE operation NOT IN "
                      f"('event.deploy', 'event.mark_deployed') AND status IN ('queued', 'processing')")
        with self.admin.connect() as conn:  # as root: the poll is not counted as the system's
            while True:
                row = conn.execute(text(poll), {"id": event_id}).first()
                conn.rollback()
                if row.status in SETTLED and row.active_task_id is None:
                    settled_at, status, reason = time.time(), row.status, row.status_reason
                    break
                now = time.time()
                if now - t0 > timeout:
                    status = f"timeout ({row.status})"
                    break
                if now - last_stall_check >= 2:  # every step done, yet the final marker never ran?
                    last_stall_check = now
                    memory.sample()
                    still_open = conn.execute(text(steps_open)).scalar()
                    last_done = conn.execute(text(
                        f"SELECT MAX(finished_at) FROM {DB_NAME}.tasks WHERE operation NOT IN "
                        f"('event.deploy', 'event.mark_deployed')")).scalar()
                    conn.rollback()
                    if not still_open and last_done is not None and now - ts(last_done) > STALL_AFTER:
                        status = f"stalled ({row.status})"
                        print(f"  every step finished at +{ts(last_done) - t0:.1f} s but event.mark_deployed "
                              f"has not run {STALL_AFTER} s later: stalled", flush=True)
                        break
                if now - last_report >= 30:
                    print(f"  ... {now - t0:5.0f} s: {self.progress_line(conn, event_id)}", flush=True)
                    last_report = now
                self.check_workers()
                time.sleep(0.1)
            # Statements until every Task is final (the orchestrator's own close comes after the release).
            deadline = time.time() + 30
            while time.time() < deadline and conn.execute(text(
                    f"SELECT COUNT(*) FROM {DB_NAME}.tasks WHERE status IN ('queued', 'processing')")).scalar():
                conn.rollback()
                time.sleep(0.2)
            conn.rollback()
        after = self.statements()
        memory.sample()
        wall = (settled_at or time.time()) - t0
        rq_stats = self.rq_stats()
        rq_stats["diagnosis"] = self.rq_diagnosis()
        self.stop_workers()
        profile = self.profile(n, event_id, t0, settled_at)
        profile["rq"] = rq_stats
        delta = {k: after[k] - before[k] for k in after}
        limit, limit_note = self.limit(n, profile)
        result = {
            "n": n, "wall": wall, "limit": limit, "limit_note": limit_note, "status": status, "reason": reason,
            "stmts": (delta["select"] + delta["update"] + delta["other"]) if self.user_made else None,
            "questions": delta["questions"], "delta": delta, "profile": profile,
            "redis_peak": memory.redis_peak - memory.redis_before, "rss_peak": memory.rss_peak,
        }
        print_run(self.args, result)
        return result

    def progress_line(self, conn, event_id: int) -> str:
        from sqlalchemy import text

        rows = conn.execute(text(
            f"SELECT operation, status, COUNT(*) FROM {DB_NAME}.tasks GROUP BY operation, status")).all()
        conn.rollback()
        done = {}
        for op, st, count in rows:
            done.setdefault(op, {})[st] = count
        return ", ".join(f"{op.split('.')[-1]} {d.get('success', 0)}/{sum(d.values())}"
                         for op, d in sorted(done.items()) if op.startswith(("vm.", "guac.", "event.access")))

    def rq_stats(self) -> dict:
        from rq import Worker

        stats = {}
        for w in Worker.all(connection=self.redis):
            role = w.name.split("@")[0]
            s = stats.setdefault(role, {"processes": 0, "executions": 0, "busy": 0.0})
            s["processes"] += 1
            s["executions"] += w.successful_job_count + w.failed_job_count
            s["busy"] += w.total_working_time
        return stats

    def rq_diagnosis(self) -> dict:
        """What RQ thinks of this deploy's jobs: re-executions after success (a finished job RQ later
        took for abandoned), finished jobs still in a StartedJobRegistry, and the final marker's
        dependencies that RQ does not count as finished although their Task succeeded."""
        from rq.job import Job
        from rq.registry import StartedJobRegistry
        from sqlalchemy import text

        from openvle.queues import QUEUE_NAMES

        with self.admin.connect() as conn:
            rows = conn.execute(text(f"SELECT operation, status, rq_job_id FROM {DB_NAME}.tasks")).all()
        task_of = {r.rq_job_id: r for r in rows}
        jobs = Job.fetch_many(list(task_of), connection=self.redis)
        rerun: dict[str, int] = {}
        marker = None
        for job in jobs:
            if job is None:
                continue
            task = task_of[job.id]
            if task.operation == "event.mark_deployed":
                marker = job
            successes = sum(1 for r in job.results() if r.type == r.Type.SUCCESSFUL)
            if successes > 1:
                rerun[task.operation] = rerun.get(task.operation, 0) + 1
        stale, stale_ops = 0, {}
        for name in QUEUE_NAMES:
            ids = StartedJobRegistry(name, connection=self.redis).get_job_and_execution_ids()
            for j in Job.fetch_many([job_id for job_id, _ in ids], connection=self.redis):
                if j and j.get_status() == "finished":
                    stale += 1
                    stale_ops[task_of[j.id].operation] = stale_ops.get(task_of[j.id].operation, 0) + 1
        out = {"rerun": rerun, "stale_started": stale, "stale_ops": stale_ops}
        if marker is not None:
            deps = [d for d in Job.fetch_many(marker._dependency_ids, connection=self.redis) if d is not None]
            unfinished: dict[str, int] = {}
            for d in deps:
                st = d.get_status()
                if st != "finished":
                    key = f"{task_of[d.id].operation} ({st} in RQ, {task_of[d.id].status} in DB)"
                    unfinished[key] = unfinished.get(key, 0) + 1
            out.update(marker_status=marker.get_status(), marker_deps=len(deps), marker_unfinished=unfinished)
        return out

    # --- where the time went --------------------------------------------------------------------------

    def profile(self, n: int, event_id: int, t0: float, settled_at: float | None) -> dict:
        from rq.job import Job
        from sqlalchemy import text

        with self.admin.connect() as conn:
            rows = conn.execute(text(
                f"SELECT id, operation, target, status, attempts, rq_job_id, created_at, started_at, finished_at "
                f"FROM {DB_NAME}.tasks")).all()
        tasks = []
        for r in rows:
            tasks.append({"id": r.id, "op": r.operation, "target": r.target or "", "status": r.status,
                          "attempts": r.attempts, "job": r.rq_job_id, "created": ts(r.created_at) - t0,
                          "started": ts(r.started_at) - t0, "finished": ts(r.finished_at) - t0})
        by_op: dict[str, list[dict]] = {}
        for t in tasks:
            by_op.setdefault(t["op"], []).append(t)
        per: dict[str, dict[str, dict]] = {}  # participant -> stage -> task
        for t in tasks:
            parts = t["target"].split("/")
            if len(parts) == 3:
                per.setdefault(parts[1], {})[parts[2]] = t
        pve_clones = [c for c in self.clone_log if c["type"] == "qmclone"]
        pve_starts = [c for c in self.clone_log if c["type"] == "qmstart"]
        for c in self.clone_log:
            c["start"] -= t0
            c["end"] = c["start"] + c["duration"]
        pve_by_vmid = {int(c["newid"]): c for c in pve_clones if not c["error"] and c["newid"] is not None}
        emails = [t for t in tasks if t["target"].endswith("/email")]
        for t, job in zip(emails, Job.fetch_many([t["job"] for t in emails], connection=self.redis), strict=True):
            if job is not None and job.enqueued_at is not None:
                t["queued"] = ts(job.enqueued_at) - t0
        checks = []
        clone_tasks = by_op.get("vm.clone", [])
        jobs = Job.fetch_many([t["job"] for t in clone_tasks], connection=self.redis)
        for job in jobs:
            if job is not None:
                checks.append(int((job.meta or {}).get("checks", 0)))
        # VM rows: which Proxmox clone task made which VM (by vmid), for per-clone lags.
        with self.admin.connect() as conn:
            vms = dict(conn.execute(text(f"SELECT participant_id, vmid FROM {DB_NAME}.vms "
                                         f"WHERE event_id = :e"), {"e": event_id}).all())
        return {"tasks": tasks, "by_op": by_op, "per": per, "pve_clones": pve_clones, "pve_starts": pve_starts,
                "pve_by_vmid": pve_by_vmid, "checks": checks, "vms": vms,
                "start_seconds": self.sims["pve"].state.config.durations["start"],
                "settled": (settled_at - t0) if settled_at else None}

    def limit(self, n: int, p: dict) -> tuple[float, str]:
        cfg = self.sims["pve"].state.config.durations
        clone_s, start_s = cfg["linked_clone"], cfg["start"]
        access = median_run(p["by_op"].get("guac.provision", []))
        email = median_run(p["by_op"].get("event.access_email", []))
        clones = math.ceil(n / self.args.concurrency) * clone_s
        vm_chain = clones + start_s + access + email
        course = median_run(p["by_op"].get("event.course", [])) + median_run(p["by_op"].get("event.enrol", [])) \
            + email
        note = (f"ceil({n}/{self.args.concurrency}) x {clone_s:g} s clones = {clones:g} s, + start {start_s:g} s "
                f"(simulator setting) + access {access:.2f} s + email {email:.2f} s (medians measured here)")
        if course > vm_chain:
            return course, f"Moodle chain course + enrol + email (measured) = {course:.1f} s; VM chain: {note}"
        return vm_chain, note

    def cleanup(self, keep_logs: bool) -> None:
        for step in (self.stop_workers, self.stop_sims, self.drop_stores):
            try:
                step()
            except Exception as exc:  # carry on: everything else must still go
                print(f"cleanup: {step.__name__}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if keep_logs and any(self.logs.iterdir()):
            print(f"worker logs kept in {self.logs}", file=sys.stderr)
        else:
            shutil.rmtree(self.logs, ignore_errors=True)

    def stop_sims(self) -> None:
        for name in ("pve", "guac", "moodle", "mail"):
            if name in self.sims:
                self.sims.pop(name).stop()

    def drop_stores(self) -> None:
        from sqlalchemy import text

        if self.redis is not None:
            self.redis.flushdb()
        try:
            from openvle.db.engine import get_engine

            get_engine().dispose()
        except Exception:
            pass
        if self.admin is None:
            return
        with self.admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {DB_NAME}"))
            if self.user_made:
                conn.execute(text(f"DROP USER IF EXISTS '{DB_USER}'@'{self.db_host}'"))
            if self.userstat_before is not None:
                conn.execute(text(f"SET GLOBAL userstat = {int(self.userstat_before)}"))
        self.admin.dispose()


class Footprint:
    """Peaks sampled during a deploy: Redis memory above where it started, and the largest resident
    set of one worker process or one of its work horses."""

    def __init__(self, redis, workers: list[Role]):
        self.redis, self.pids = redis, [w.proc.pid for w in workers]
        self.redis_before = self.redis_peak = int(redis.info("memory")["used_memory"])
        self.rss_peak = 0

    def sample(self) -> None:
        self.redis_peak = max(self.redis_peak, int(self.redis.info("memory")["used_memory"]))
        for pid in self.pids + children(self.pids):
            self.rss_peak = max(self.rss_peak, rss(pid))


def children(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # it ended meanwhile
    return found


def rss(pid: int) -> int:
    """Peak resident set (VmHWM) of a process in bytes; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Role:
    """One role as its own process, like one compose service (tests/conftest.py RoleProcess)."""

    def __init__(self, role: str, env: dict[str, str], log_path: Path):
        self.role = role
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openvle", "run", role], env={**env, "SERVICE_ROLE": role},
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def signal(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown: the running job finishes

    def wait(self, timeout: float = 30) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the worker and its horse
            self.proc.wait()
        self._log.close()


# --- figures ------------------------------------------------------------------------------------------


def ts(value) -> float:
    return value.replace(tzinfo=dt.UTC).timestamp() if value is not None else math.nan


def median_run(tasks: list[dict]) -> float:
    runs = [t["finished"] - t["started"] for t in tasks if not math.isnan(t["finished"] - t["started"])]
    return statistics.median(runs) if runs else 0.0


def spread(values) -> str:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return "-"
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"{statistics.median(values):.2f} / {p95:.2f} / {values[-1]:.2f}"


def print_run(args, r: dict) -> None:
    p, n = r["profile"], r["n"]
    by_op, per = p["by_op"], p["per"]
    print(f"  status {r['status']} in {r['wall']:.1f} s; limit {r['limit']:.1f} s: {r['limit_note']}")
    if r["reason"]:
        print(f"  reason: {r['reason'][:300]}")
    d = r["delta"]
    if r["stmts"] is not None:
        print(f"  DB (system's user only): {r['stmts']} statements = {d['select']} SELECT + {d['update']} "
              f"INSERT/UPDATE/DELETE + {d['other']} other; {d['commits']} commits, {d['connections']} new "
              f"connections ({d['connections'] / n:.1f} per participant); server-wide Questions "
              f"{d['questions']} (incl. other clients)")
    else:
        print(f"  DB: server-wide Questions {d['questions']} (incl. other clients and this script's polls)")
    deploy = (by_op.get("event.deploy") or [None])[0]
    steps = [t for t in p["tasks"] if t["op"] != "event.deploy"]
    if deploy:
        print(f"  orchestrator: queued -> started {deploy['started']:.2f} s; planned {len(steps)} steps, the "
              f"last created at +{max(t['created'] for t in steps):.2f} s")
    clones = p["pve_clones"]
    good = [c for c in clones if not c["error"]]
    if good:
        first, last = min(c["start"] for c in good), max(c["end"] for c in good)
        span = last - first
        in_flight = sum(c["duration"] for c in good) / span if span > 0 else 0
        print(f"  Proxmox clones: {len(good)} ok, {len(clones) - len(good)} failed (storage lock); first started "
              f"+{first:.2f} s, last ended +{last:.2f} s; mean in flight {in_flight:.2f} of {args.concurrency} "
              f"(slot use {100 * in_flight / args.concurrency:.0f}%)")
    if good:
        lag, wait_for_slot, held = [], [], []
        vmid_of_target = {f"participant:{pid}": vmid for pid, vmid in p["vms"].items()}
        for target, stages in per.items():  # each clone Task with the Proxmox task that made its VM
            clone = stages.get("clone")
            c = p["pve_by_vmid"].get(vmid_of_target.get(target))
            if clone is None or c is None:
                continue
            wait_for_slot.append(c["start"] - clone["started"])
            lag.append(clone["finished"] - c["end"])
            held.append(clone["finished"] - c["start"])
        if lag:
            print(f"  per clone (median / p95 / max s): clone Task started -> Proxmox clone started "
                  f"{spread(wait_for_slot)} (placement + slot wait); Proxmox clone ended -> clone Task finished "
                  f"{spread(lag)}; slot held (Proxmox start -> Task finished) {spread(held)} vs "
                  f"{args.clone_seconds:g} s of cloning")
    rq = p.get("rq", {})
    vc = rq.get("worker-vm-clone")
    if vc:
        execs = vc["executions"]
        cl = len(by_op.get("vm.clone", []))
        span_end = max((t["finished"] for t in by_op.get("vm.clone", [])), default=0)
        print(f"  worker-vm-clone ({vc['processes']} process(es)): {execs} job executions for {cl} clones "
              f"({execs / max(cl, 1):.1f} each; check-backs per clone {spread(p['checks'])}); in job code "
              f"{vc['busy']:.1f} s of the {span_end:.1f} s until the last clone; "
              f"{1000 * span_end / max(execs, 1):.0f} ms per execution if it never idled")
    w = rq.get("worker")
    if w:
        print(f"  worker x {w['processes']}: {w['executions']} job executions, {w['busy']:.1f} s in job code")

    def stage_line(stage: str, before: str) -> str:
        queued, run = [], []
        for stages in per.values():
            t, prev = stages.get(stage), stages.get(before)
            if t is None:
                continue
            ready = prev["finished"] if prev else t["created"]
            queued.append(max(0.0, t["started"] - max(ready, t["created"])))  # RQ may start it before the
            # previous Task's row says finished (the worker records a success after its horse exits)
            run.append(t["finished"] - t["started"])
        return f"{stage}: waited {spread(queued)}, ran {spread(run)}"

    print("  after each clone (median / p95 / max s): " + "; ".join(
        stage_line(s, b) for s, b in (("start", "clone"), ("access", "start"), ("email", "access"))))
    for op in ("event.course", "event.enrol"):
        for t in by_op.get(op, []):
            print(f"  {op}: started +{t['started']:.2f} s, ran {t['finished'] - t['started']:.2f} s")
    if good:
        last_clone = max(c["end"] for c in good)
        emails = [t["finished"] for t in by_op.get("event.access_email", [])]
        if emails:
            print(f"  tail: last Proxmox clone ended +{last_clone:.2f} s, last access email sent "
                  f"+{max(emails):.2f} s ({max(emails) - last_clone:.2f} s after; start {p['start_seconds']:g} s of "
                  f"it is "
                  f"Proxmox), event released +{r['wall']:.2f} s")
            last = max(per.items(), key=lambda kv: kv[1].get("email", {}).get("finished", -1.0))
            vmid = p["vms"].get(int(last[0].split(":")[1])) if last[0].startswith("participant:") else None
            made = p["pve_by_vmid"].get(vmid)
            chain = [f"Proxmox clone ended +{made['end']:.2f}"] if made else []
            chain += [f"{stage} +{t['started']:.2f}..+{t['finished']:.2f}" for stage in ("clone", "start", "access",
                                                                                       "email")
                      if (t := last[1].get(stage)) is not None]
            queued = last[1].get("email", {}).get("queued")
            if queued is not None:  # when RQ queued it (its access done), against when a worker took it
                chain.append(f"email queued in RQ +{queued:.2f}")
            print(f"  the last email's participant: {', '.join(chain)}")
    diag = rq.get("diagnosis", {})
    if diag.get("rerun") or diag.get("stale_started"):
        print(f"  RQ re-ran jobs whose Task had already succeeded: {diag['rerun']}; finished jobs still in a "
              f"StartedJobRegistry (will be taken for abandoned and retried): {diag['stale_started']} "
              f"{diag.get('stale_ops')}")
    if diag.get("marker_status") and diag["marker_status"] != "finished":
        print(f"  event.mark_deployed is {diag['marker_status']} in RQ behind {diag['marker_deps']} dependencies; "
              f"not finished in RQ: {diag['marker_unfinished'] or 'none'}")
    steps_done = max((t["finished"] for t in p["tasks"] if t["op"] not in ("event.deploy", "event.mark_deployed")
                      and not math.isnan(t["finished"])), default=math.nan)
    if not p["settled"] and not math.isnan(steps_done):
        print(f"  not settled: every step had finished at +{steps_done:.1f} s (ratio on that basis "
              f"{steps_done / r['limit']:.2f}, excluding the marker and the orchestrator's last look)")
    retried = [t for t in p["tasks"] if t["attempts"] > 1]
    if retried:
        print(f"  retried Tasks: {len(retried)} ({', '.join(sorted({t['op'] for t in retried}))})")


def print_table(args, results: list[dict]) -> None:
    print(f"\nclone {args.clone_seconds:g} s, PVE_CLONE_CONCURRENCY={args.concurrency} (per node and per template; "
          f"one template, 3 nodes -> {args.concurrency} clones in flight at most), PVE_POLL_INTERVAL="
          f"{args.poll_interval}, {args.workers} x worker + {args.clone_workers} x worker-vm-clone")
    print(f"{'participants':>12} {'wall s':>8} {'limit s':>8} {'ratio':>6} {'stmts/p':>8} {'Questions/p':>12} "
          f"{'Redis KiB/p':>11} {'worker MiB':>10}  status")
    for r in results:
        stmts = f"{r['stmts'] / r['n']:.1f}" if r["stmts"] is not None else "-"
        settled = r["profile"]["settled"] is not None
        wall = f"{r['wall']:.1f}" if settled else f">{r['wall']:.0f}"
        ratio = f"{r['wall'] / r['limit']:.2f}" if settled else f">{r['wall'] / r['limit']:.1f}"
        print(f"{r['n']:>12} {wall:>8} {r['limit']:>8.1f} {ratio:>6} {stmts:>8} "
              f"{r['questions'] / r['n']:>12.1f} {r['redis_peak'] / 1024 / r['n']:>11.1f} "
              f"{r['rss_peak'] / 2**20:>10.0f}  {r['status']}")
    print("targets: ratio <= 1.15 at 200 (and at 1,000); statements per participant flat from the smallest to the "
          "largest size.\nRedis KiB/p: peak Redis memory during the deploy above where it started, per participant; "
          "worker MiB: the largest peak resident set of one worker or work horse process")


if __name__ == "__main__":
    raise SystemExit(main())
