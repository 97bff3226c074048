"""What every fault scenario shares: the whole system as processes, and the counting.

Each scenario runs real role processes (worker, worker-vm-clone, scheduler) against this machine's
MariaDB and Redis and the simulators over their real protocols, breaks something on purpose, waits
for the event to settle and counts what a user would notice: Tasks lost or stuck, anything made
twice, anything left behind. `report()` prints one line a scenario (the README's Faults table).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from conftest import RoleProcess, wait_for
from openvle.db.engine import session_scope
from openvle.db.models import Event, Participant, Task, TaskStatus, Vm
from openvle.jobs.vms import MARK

# Recovery settings for the roles: dead workers' jobs found within seconds, repairs every 5 s.
FAST_RECOVERY = {
    "WORKER_MAINTENANCE_INTERVAL": "5", "WORKER_JOB_MONITORING_INTERVAL": "2", "RECONCILE_INTERVAL": "5",
    "RECONCILE_GRACE": "5", "SCHEDULER_HEARTBEAT_INTERVAL": "5", "WORKER_MAX_RETRY": "8",
    "WORKER_PVE_PERIODIC_INTERVAL": "3600",
}


# OPENVLE_FAULTS_PROFILE=ci: the same scenarios on smaller events, so CI can run the whole suite
# within its budget (README, Faults); every fault still lands mid-work, every count is still checked.
CI_PROFILE = os.environ.get("OPENVLE_FAULTS_PROFILE", "full") == "ci"


def sized(full: int, ci: int) -> int:
    """Participants of a scenario's event: `full` normally, `ci` in the CI profile."""
    return ci if CI_PROFILE else full


@dataclass
class Counts:
    scenario: str
    settle_seconds: float = 0.0
    tasks_lost: int = 0  # participants whose work never happened (no ready VM, no access email)
    tasks_stuck: int = 0  # Tasks still queued/processing once the event settled
    failed_for_good: int = 0
    vms_twice: int = 0
    guacamole_twice: int = 0
    moodle_users_twice: int = 0
    emails_twice: int = 0  # two different emails of one kind to one person
    emails_resent: int = 0  # the same email (one Message-ID) sent again: its first 250 was lost
    left_after_archive: int | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        left = "-" if self.left_after_archive is None else str(self.left_after_archive)
        return (f"FAULTS | {self.scenario} | settled in {self.settle_seconds:.0f}s | lost {self.tasks_lost} | "
                f"stuck {self.tasks_stuck} | failed for good {self.failed_for_good} | twice: VMs {self.vms_twice}, "
                f"Guacamole {self.guacamole_twice}, Moodle users {self.moodle_users_twice}, emails "
                f"{self.emails_twice} (re-sent with the same Message-ID {self.emails_resent}) | "
                f"left after archive {left}" + (f" | {'; '.join(self.notes)}" if self.notes else ""))


def report(counts: Counts) -> None:
    print("\n" + counts.line(), flush=True)
    path = os.environ.get("OPENVLE_FAULTS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(counts.line() + "\n")


def kill9(proc: RoleProcess) -> None:
    """What `docker kill` does: the role and every process it forked die at once, nothing written."""
    os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait()


def active_tasks(event_id: int | None = None) -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(Task).where(Task.status.in_(TaskStatus.ACTIVE))
        if event_id is not None:
            query = query.where(Task.event_id == event_id)
        return session.execute(query).scalar()


def tasks_in(event_id: int, *statuses: str) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Task).where(
            Task.event_id == event_id, Task.status.in_(statuses))).scalar()


def operation_running(operation: str) -> bool:
    with session_scope() as session:
        return bool(session.execute(select(func.count()).select_from(Task).where(
            Task.operation == operation, Task.status == TaskStatus.PROCESSING)).scalar())


def operation_done(operation: str) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Task).where(
            Task.operation == operation, Task.status == TaskStatus.SUCCESS)).scalar()


def wait_settled(event_id: int, statuses: tuple[str, ...], timeout: float, proc: RoleProcess | None = None):
    """The event in one of `statuses`, its orchestrator done and none of its Tasks active."""

    def done():
        with session_scope() as session:
            event = session.get(Event, event_id)
        return event if (event.status in statuses and event.active_task_id is None
                         and active_tasks(event_id) == 0) else None

    return wait_for(done, timeout, f"event {event_id} to settle in {statuses}", proc, interval=1)


def count_deploy(counts: Counts, event_id: int, sims: dict) -> None:
    pve, guac, moodle, mail = sims["pve"], sims["guac"], sims["moodle"], sims["mail"]
    with session_scope() as session:
        people = session.execute(select(Participant).where(
            Participant.event_id == event_id, Participant.role == "participant",
            Participant.removed_at.is_(None))).scalars().all()
        vms = {v.id: v for v in session.execute(select(Vm).where(Vm.event_id == event_id)).scalars()}
    ready = {p.id for p in people if p.vm_id in vms and vms[p.vm_id].state == "ready" and vms[p.vm_id].access_link}
    mailed = Counter(m["rcpt_tos"][0] for m in mail.state.messages() if m["subject"].startswith("Your lab for"))
    counts.tasks_lost = sum(1 for p in people if p.id not in ready) + max(0, len(people) - len(mailed))
    counts.tasks_stuck = active_tasks(event_id)  # periodic Tasks (heartbeat, reconcile) come and go meanwhile
    counts.failed_for_good = tasks_in(event_id, TaskStatus.ERROR)
    marks = Counter(_mark_of(v) for v in pve.state.snapshot()["vms"])
    marks.pop(None, None)
    counts.vms_twice = sum(n - 1 for n in marks.values() if n > 1) + sum(
        1 for row_id in marks if row_id not in vms)  # a VM of ours no row knows: made twice
    snapshot = guac.state.snapshot()
    names = Counter(c["name"] for c in snapshot["connections"])
    profiles = Counter(p["name"] for p in snapshot["sharingProfiles"])
    counts.guacamole_twice = sum(n - 1 for n in names.values() if n > 1) + sum(
        n - 1 for n in profiles.values() if n > 1)
    emails = Counter(u.get("email") for u in moodle.state.snapshot().get("users", []))
    counts.moodle_users_twice = sum(n - 1 for n in emails.values() if n > 1)
    # A copy with the Message-ID of one already caught is the same email sent again after its 250 was
    # lost (jobs/mail.py: at least once): one message to the mailbox, counted apart as re-sent.
    caught = mail.state.messages()
    ids = {m["message_id"] for m in caught}
    counts.emails_resent = len(caught) - len(ids)
    sent = Counter((m["rcpt_tos"][0], m["subject"]) for m in {m["message_id"]: m for m in caught}.values())
    counts.emails_twice = sum(n - 1 for n in sent.values() if n > 1)


def count_archive(counts: Counts, event_id: int, sims: dict) -> None:
    pve, guac = sims["pve"], sims["guac"]
    with session_scope() as session:
        rows = session.execute(select(Vm.id).where(Vm.event_id == event_id)).scalars().all()
    ours = [v for v in pve.state.snapshot()["vms"] if _mark_of(v) in set(rows)]
    snapshot = guac.state.snapshot()
    counts.left_after_archive = (len(ours) + len(snapshot["connections"]) + len(snapshot["sharingProfiles"])
                                 + len([u for u in snapshot["users"] if u["username"] != "guacadmin"]))
    counts.tasks_stuck = max(counts.tasks_stuck, active_tasks(event_id))
    counts.failed_for_good += tasks_in(event_id, TaskStatus.ERROR)


def _mark_of(vm: dict) -> int | None:
    text = str(vm.get("description") or "")
    if f"{MARK}=" not in text:
        return None
    return int(text.split(f"{MARK}=", 1)[1].split()[0])


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.started


class RestartPolicy:
    """compose's `restart: unless-stopped` for roles started by a test: a role that exits (a worker
    quits when Redis is gone) is started again a second later, for as long as the scenario runs."""

    def __init__(self, start_role, env: dict, roles: list[str]):
        import threading

        self._start, self._env = start_role, env
        self.procs = {role: start_role(role, wait=False, **env) for role in roles}
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(1):
            for role, proc in list(self.procs.items()):
                if proc.proc.poll() is not None:
                    self.procs[role] = self._start(role, wait=False, **self._env)
                    self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
