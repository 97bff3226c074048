"""Workers that died without a word (kill -9, the OOM killer, a host lost), noticed in seconds.

RQ notices a dead worker's job only once the job's heartbeat entry lapses, job_monitoring_interval
+ 60 s after the last beat, and then only at the next registry cleanup. What tells sooner:

- its registration is gone (it expired, or the worker said it stopped);
- its process is gone: a worker on this machine (same boot, same pid namespace: every worker writes
  where its pid means something into its registration) whose pid no longer runs, or now belongs to
  a process started after the worker was born (the same container started again);
- it was this container's worker before the container was started again: each worker leaves a
  note with its name and pid space in WORKER_LIVES_DIR (the container's own files), and a note
  from another pid space or boot found there at start belongs to a worker that died with the
  container (every process of a container does). Under compose this is what tells, as soon as the
  killed container is started again; without it its job would wait for the heartbeat check;
- its heartbeat is late: none for LATE_BEATS job-monitoring intervals, and still the same beat on a
  second look at least one interval later (a worker merely cut off from Redis beats again as soon
  as Redis is back, and is left alone).

A dead worker's jobs go to RQ's own abandoned-job handling (`StartedJobRegistry.cleanup`: the
on_failure callback records the lost attempt, then RQ retries the job or fails it per its retries):
we only mark their registry entries as lapsed, and say why in the job's meta.

The same evidence frees a queue's scheduler lock held by a dead worker's scheduler (RQ keeps it
for 61 s after the last refresh), so a replacement worker schedules that queue's retries and
check-backs at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from functools import cache
from pathlib import Path

from redis import Redis
from rq.exceptions import NoSuchJobError, SchedulerNotFound
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import release_lock
from rq.utils import utcformat, utcparse
from rq.worker import Worker

log = logging.getLogger("openvle.dead_workers")

LATE_BEATS = 3  # a busy worker beats every job-monitoring interval: this many missed ones is late
SCHEDULER_LATE = 10  # seconds: RQ's scheduler beats every second
RQ_LOCK_TTL = 61  # seconds RQ's worker scheduler takes (and refreshes) its queues' locks for
LATE_KEY = "openvle:worker-late:{}"  # the late beat first seen, and when: "beat|seen at"
KNOWN_DEAD_KEY = "openvle:worker-dead:{}"  # a worker known dead by its life note, and why
KNOWN_DEAD_TTL = 24 * 3600  # seconds; long after its registration (and jobs) expired
LOST_BECAUSE = "lost_because"  # job meta: why its attempt is lost (read by tracking.on_job_failure)


@cache
def pid_space() -> str:
    """Where a pid names a process: this boot of this machine and this pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: pids are never compared, heartbeats still tell
        return ""


def _process_started(pid: int) -> float | None:
    """When process `pid` started (epoch seconds), or None when no live process has that pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return None
    return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")


@cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _gone(pid: int, alive_at: dt.datetime) -> str | None:
    """Whether the process that was `pid` at `alive_at` is gone (no such pid, or a newer process)."""
    started = _process_started(pid)
    if started is None:
        return f"pid {pid} no longer runs"
    if started > alive_at.timestamp() + 2:  # /proc/stat's boot time is whole seconds
        return f"pid {pid} now belongs to a newer process"
    return None


def note_life(redis: Redis, name: str, directory: Path) -> list[str]:
    """Leave worker `name`'s life note in `directory`; returns the workers its notes there show dead.

    A note from another pid space (or boot) is this container's worker before it was started again,
    dead with it. A note from this pid space is judged by its pid: a container started again may get
    its old pid namespace's number back (the kernel reuses them), and its old pid then runs nothing
    or a newer process. Either way the verdict is said in Redis, so every worker's next look hands
    that worker's jobs back at once."""
    space = pid_space()
    if not space:  # not Linux: nothing to compare
        return []
    directory.mkdir(parents=True, exist_ok=True)
    dead = []
    for path in directory.glob("*.life"):
        try:
            note = json.loads(path.read_text())
            other, other_space, pid, birth = note["name"], note["pid_space"], int(note["pid"]), note["birth"]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # half written when its worker was killed
            continue
        if other == name:
            continue  # written anew below
        gone = "its container was started again" if other_space != space else _gone(pid, utcparse(birth))
        if gone is None:
            continue  # alive: another worker of this container or machine
        redis.set(KNOWN_DEAD_KEY.format(other), f"its worker {other} is gone ({gone})", ex=KNOWN_DEAD_TTL)
        dead.append(other)
        path.unlink(missing_ok=True)
    note = {"name": name, "pid_space": space, "pid": os.getpid(), "birth": utcformat(dt.datetime.now(dt.UTC))}
    (directory / f"{name}.life").write_text(json.dumps(note))
    if dead:
        log.warning("workers that left a life note in %s and are gone: %s; their jobs are retried", directory,
                    ", ".join(dead))
    return dead


def forget_life(name: str, directory: Path) -> None:
    """The worker stops on its own: its note goes with it."""
    (directory / f"{name}.life").unlink(missing_ok=True)


def why_worker_dead(redis: Redis, name: str, monitoring_interval: float, now: float | None = None) -> str | None:
    """Why worker `name` is dead, or None while it may be alive."""
    now = time.time() if now is None else now
    raw = redis.hgetall(Worker.redis_worker_namespace_prefix + name)
    if not raw:
        return f"its worker {name} is no longer registered"
    data = {k.decode(): v.decode() for k, v in raw.items()}
    if "death" in data:
        return f"its worker {name} stopped"
    known = redis.get(KNOWN_DEAD_KEY.format(name))
    if known is not None:
        return known.decode()
    if data.get("pid_space") and data["pid_space"] == pid_space() and data.get("pid") and data.get("birth"):
        gone = _gone(int(data["pid"]), utcparse(data["birth"]))
        # Its process runs: alive, however late its heartbeat (Redis may just be back).
        return f"its worker {name} is gone ({gone} on {socket.gethostname()})" if gone else None
    beat = data.get("last_heartbeat", "")
    late = now - utcparse(beat).timestamp() if beat else float("inf")
    key = LATE_KEY.format(name)
    if late < LATE_BEATS * monitoring_interval:
        redis.delete(key)
        return None
    seen = redis.get(key)
    if seen is None or seen.decode().rsplit("|", 1)[0] != beat:  # first look at this late beat
        redis.set(key, f"{beat}|{now}", ex=int(max(60, 20 * monitoring_interval)))
        return None
    if now - float(seen.decode().rsplit("|", 1)[1]) < monitoring_interval:
        return None
    return f"its worker {name} stopped sending heartbeats ({late:.0f}s without one)"


def reap(redis: Redis, queues: list[str], monitoring_interval: float) -> list[str]:
    """Hand the jobs of dead workers on `queues` to RQ's abandoned-job handling; returns their ids."""
    handed: list[str] = []
    verdicts: dict[str, str | None] = {}
    for queue in queues:
        registry = StartedJobRegistry(queue, connection=redis)
        entries = registry.get_job_and_execution_ids(cleanup=False)
        if not entries:
            continue
        lapsed: dict[str, int] = {}
        for (job_id, execution_id), job in zip(entries, Job.fetch_many([j for j, _ in entries], connection=redis),
                                               strict=True):
            if job is None or job.get_status(refresh=False) != JobStatus.STARTED or not job.worker_name:
                continue  # RQ's own cleanup deals with leftovers
            if job.worker_name not in verdicts:
                verdicts[job.worker_name] = why_worker_dead(redis, job.worker_name, monitoring_interval)
            reason = verdicts[job.worker_name]
            if reason is not None:
                job.meta[LOST_BECAUSE] = reason
                job.save_meta()
                lapsed[f"{job_id}:{execution_id}"] = 1  # long past: RQ takes the job for abandoned
        if lapsed:
            redis.zadd(registry.key, lapsed, xx=True)
            registry.cleanup()
            handed += [key.split(":", 1)[0] for key in lapsed]
            log.warning("jobs of dead workers handed back to RQ on %s: %s", queue, ", ".join(sorted(lapsed)))
    return handed


def abandon(redis: Redis, job_id: str, queue: str, reason: str) -> bool:
    """Hand one job to RQ's abandoned-job handling now: its own worker lost track of it (Redis went
    away while it ran, so nobody knows how it ended). False when RQ no longer has it running."""
    registry = StartedJobRegistry(queue, connection=redis)
    entries = [e for e in redis.zrange(registry.key, 0, -1) if e.decode().split(":", 1)[0] == job_id]
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    if not entries or job.get_status(refresh=False) != JobStatus.STARTED:
        return False
    job.meta[LOST_BECAUSE] = reason
    job.save_meta()
    redis.zadd(registry.key, dict.fromkeys(entries, 1), xx=True)
    registry.cleanup()
    log.warning("job %s handed back to RQ: %s", job_id, reason)
    return True


def why_scheduler_dead(redis: Redis, name: str, lock_ttl: float, now: float | None = None) -> str | None:
    """Why the RQ scheduler `name` (a lock's holder) is dead, or None while it may be alive."""
    now = time.time() if now is None else now
    try:
        scheduler = RQScheduler.fetch(name, redis)
    except SchedulerNotFound:
        # A worker takes the lock, then forks the scheduler, which registers: a lock taken (or
        # refreshed) in the last few seconds has a holder on its way.
        fresh = lock_ttl > RQ_LOCK_TTL - SCHEDULER_LATE
        return None if fresh else f"scheduler {name} is no longer registered"
    if scheduler.hostname == socket.gethostname() and scheduler.pid:
        # A wrong guess costs nothing: a live scheduler takes its lock again at its next beat, or
        # leaves the queue to whoever took it; never do two schedule one queue.
        gone = _gone(scheduler.pid, scheduler.last_heartbeat or scheduler.created_at)
        if gone:
            return f"scheduler {name} is gone ({gone} on {scheduler.hostname})"
    if scheduler.last_heartbeat is None or now - scheduler.last_heartbeat.timestamp() > SCHEDULER_LATE:
        return f"scheduler {name} stopped sending heartbeats"
    return None


def free_dead_scheduler_locks(redis: Redis, queues: list[str], mine: str | None = None) -> list[str]:
    """Release the scheduler locks of `queues` held by dead schedulers (never `mine`); returns those queues."""
    freed = []
    for queue in queues:
        key = RQScheduler.get_locking_key(queue)
        holder = redis.get(key)
        if holder is None or holder.decode() == mine:
            continue
        reason = why_scheduler_dead(redis, holder.decode(), redis.ttl(key))
        if reason is not None and release_lock(redis, key, holder.decode()):
            log.warning("scheduler lock of %s released: %s", queue, reason)
            freed.append(queue)
    return freed
