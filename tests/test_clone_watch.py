"""The clone watcher: sees a node's clones end in one call, frees their slots and starts the next
clone; leads alone, and another replica's watcher takes over when its lease lapses.

The Proxmox simulator runs on a clock the test moves: a clone ends exactly when the test says."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from conftest import wait_for
from helpers import fresh_cluster, load_task, new_template, settled, started_proxmox
from openvle import clone_watch, pacing
from openvle.clients.proxmox import get_proxmox
from openvle.clone_watch import WATCHED_LOOK
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import TaskLog, Vm
from openvle.jobs.vms import request_clone
from sandbox.clock import FakeClock

GIB = 1024**3
CLONE = 5.0  # simulated seconds a linked clone takes


@pytest.fixture(scope="module")
def simulator():
    yield from started_proxmox(clock=FakeClock(start=time.time()))


@pytest.fixture
def pve(simulator, settings_env):
    return fresh_cluster(simulator, settings_env, {"linked_clone": CLONE}, PVE_CLONE_CONCURRENCY="1",
                         PVE_CLONE_WATCHER="true")


def template(vmid: int = 9000) -> int:
    return new_template(vmid)


def running_clones(pve) -> list[str]:
    return [t.upid for t in pve.state.active_tasks() if t.type == "qmclone"]


def upid_of(vm_id: int) -> str | None:
    with session_scope() as session:
        return session.execute(select(Vm.upid).where(Vm.id == vm_id)).scalar_one()


def test_a_clone_that_ends_frees_its_slot_and_the_waiting_clone_starts(pve):
    """One look at the node's task list: the ended clone's slot goes at once to the oldest waiting
    clone (moved to the front of its queue), its own check-back runs now, the running ones keep theirs."""
    tid = template()
    redis = get_redis()
    queue = Queue("pve_vm_clone", connection=redis)
    first = get_proxmox().clone("pve1", 9000, 101, name="first")
    assert pacing.acquire("pve1", tid, 1, 2)  # the node takes two clones at a time
    own = queue.enqueue_in(timedelta(seconds=WATCHED_LOOK), "builtins.print")  # the clone's check-back
    clone_watch.watch(1, first, "pve1", tid, own.id)
    waiter = queue.enqueue_in(timedelta(seconds=pacing.WAIT_FALLBACK), "builtins.print")  # no slot: it waits
    pacing.wait_for_slot(waiter.id, "pve1", tid, 2)
    other = template(9001)  # a clone of another template, started a second later on the same node
    pve.state.clock.advance(1)
    assert pacing.acquire("pve1", other, 2, 2) and not pacing.acquire("pve1", tid, 3, 2)  # full
    clone_watch.watch(2, get_proxmox().clone("pve1", 9001, 102, name="second"), "pve1", other, None)
    queue.enqueue("builtins.print")  # some other job already queued

    watcher = clone_watch.Watcher("test")
    assert watcher.step() == 0  # both still run: nothing released, their claims refreshed
    assert redis.zscore(f"openvle:clone-slots:template:{tid}", 1) is not None
    assert Job.fetch(waiter.id, connection=redis).get_status() == "scheduled"

    pve.state.clock.advance(CLONE - 1)
    assert watcher.step() == 1
    assert redis.zscore(f"openvle:clone-slots:template:{tid}", 1) is None  # the slot is free...
    assert queue.job_ids[:2] == [waiter.id, own.id]  # ...the waiter runs first, then the ended clone's job
    assert waiter.id not in ScheduledJobRegistry(queue=queue) and redis.zcard(pacing.WAITERS) == 0
    assert set(redis.hkeys(clone_watch.WATCHED)) == {b"2"}  # the running one is still watched
    assert redis.zscore(f"openvle:clone-slots:template:{other}", 2) is not None


def _placed_waiter(queue, tid: int, vm_id: int, newid: int, limit: int = 1):
    """A clone job waiting for a slot with its clone call ready, as clone_vm leaves it."""
    waiter = queue.enqueue_in(timedelta(seconds=pacing.WAIT_FALLBACK), "builtins.print")
    call = {"node": "pve1", "template_vmid": 9000, "newid": newid, "name": f"waiting-{vm_id}", "full": False,
            "target": None, "description": f"openvle-vm-id={vm_id}"}
    pacing.wait_for_slot(waiter.id, "pve1", tid, limit, {"vm_id": vm_id, "clone": call})
    return waiter


def _made(pve, newid: int) -> bool:
    return any(int(v["vmid"]) == newid for v in pve.state.snapshot()["vms"])


def test_the_watcher_makes_a_placed_waiting_clone_s_call_the_moment_its_slot_frees(pve):
    """No job between a clone's end and the next clone's start: the watcher starts the waiting
    clone itself, records its task for the job and follows it; the job goes behind the queued work
    (it only takes the task over), the ended clone's own job to the front."""
    tid = template()
    redis = get_redis()
    queue = Queue("pve_vm_clone", connection=redis)
    first = get_proxmox().clone("pve1", 9000, 101, name="first")
    assert pacing.acquire("pve1", tid, 1, 1)
    own = queue.enqueue_in(timedelta(seconds=WATCHED_LOOK), "builtins.print")
    clone_watch.watch(1, first, "pve1", tid, own.id)
    waiter = _placed_waiter(queue, tid, 2, 102)
    queued = queue.enqueue("builtins.print")  # other work already queued

    watcher = clone_watch.Watcher("test")
    assert watcher.step() == 0 and not _made(pve, 102)  # no free slot: it waits
    pve.state.clock.advance(CLONE)
    assert watcher.step() == 1

    [started] = running_clones(pve)
    assert _made(pve, 102) and pacing.started_by_watcher(2) == started  # for the job to take over
    assert redis.zscore(f"openvle:clone-slots:template:{tid}", 2) is not None  # the slot is its now
    assert queue.job_ids == [own.id, queued.id, waiter.id]
    assert redis.zcard(pacing.WAITERS) == 0 and not redis.hexists(pacing.WAITER_STARTS, waiter.id)
    assert json.loads(redis.hget(clone_watch.WATCHED, "2"))["job"] == waiter.id  # its end wakes the job
    assert redis.get(pacing.START_HOLD.format(2)) is None  # let go of
    queue.remove(own.id)  # the first clone's job ran
    pve.state.clock.advance(CLONE)
    assert watcher.step() == 1 and pacing.in_flight("pve1") == 0
    assert queue.job_ids == [waiter.id, queued.id]  # its clone ended: its job goes ahead of the queued work


def test_the_watcher_never_starts_the_clone_of_a_vm_being_deleted(pve):
    tid = template()
    queue = Queue("pve_vm_clone", connection=get_redis())
    waiter = _placed_waiter(queue, tid, 2, 102)
    assert pacing.forbid_start(2)  # delete_vm of VM row 2 ran
    assert clone_watch.Watcher("test").step() == 0
    assert not _made(pve, 102) and pacing.in_flight("pve1") == 0
    assert Job.fetch(waiter.id, connection=get_redis()).get_status() == "scheduled"  # it fails by itself
    assert pacing.hold_start(2, "job:x") is None  # so does its job, when it looks


def test_a_clone_call_the_watcher_cannot_make_goes_back_to_its_job(pve):
    """The VM id was taken by a stranger since the clone was placed: the slot is given back and the
    job, at the front of the queue, picks another id (as when its own call meets it)."""
    tid = template()
    redis = get_redis()
    queue = Queue("pve_vm_clone", connection=redis)
    get_proxmox().clone("pve1", 9000, 102, name="stranger")
    pve.state.clock.advance(CLONE)
    queued = queue.enqueue("builtins.print")
    waiter = _placed_waiter(queue, tid, 2, 102)
    assert clone_watch.Watcher("test").step() == 0
    assert pacing.in_flight("pve1") == 0 and pacing.started_by_watcher(2) is None
    assert queue.job_ids == [waiter.id, queued.id] and redis.zcard(pacing.WAITERS) == 0
    assert redis.get(pacing.START_HOLD.format(2)) is None


def test_an_unreadable_task_list_releases_nothing(pve):
    tid = template()
    upid = get_proxmox().clone("pve1", 9000, 101, name="first")
    assert pacing.acquire("pve1", tid, 1, 1)
    clone_watch.watch(1, upid, "pve1", tid, None)
    pve.state.clock.advance(CLONE)
    pve.state.set_faults(error_rate=1.0)
    try:
        assert clone_watch.Watcher("test").step() == 0
    finally:
        pve.state.set_faults(error_rate=0.0)
    assert pacing.in_flight("pve1") == 1  # kept until a list shows the end (or the claim lapses)
    assert clone_watch.Watcher("test").step() == 1 and pacing.in_flight("pve1") == 0


def test_one_watcher_leads_and_another_takes_over_when_its_lease_lapses(clean):
    redis = get_redis()
    alive, dead = clone_watch.Watcher("replica-a"), clone_watch.Watcher("replica-b")
    assert dead.lead() and not alive.lead()
    assert dead.lead() and clone_watch.watcher_alive()  # renewing its own lease
    redis.pexpire(clone_watch.LEADER, 1)  # replica-b died: nobody renews, its lease runs out
    wait_for(lambda: not clone_watch.watcher_alive(), 5, "the lease to lapse")
    assert alive.lead() and redis.get(clone_watch.LEADER) == b"replica-a"


def test_the_clone_worker_starts_the_next_clone_when_its_watcher_sees_the_end(pve, start_role):
    """End to end: worker-vm-clone with its watcher. The first clone's job looks back only after
    WATCHED_LOOK s; the watcher sees the clone end, starts the waiting clone itself and the first one
    is made ready before that look was due; the waiting clone's job takes its clone over."""
    worker = start_role("worker-vm-clone", **pve.env)
    wait_for(clone_watch.watcher_alive, 30, "the clone watcher to lead", worker)
    tid = template()
    first, first_task = request_clone(tid, "lab-1 alice")
    second, second_task = request_clone(tid, "lab-2 bob")
    wait_for(lambda: len(running_clones(pve)) == 1 and get_redis().zcard(pacing.WAITERS) == 1, 30,
             "one clone to run and the other to wait", worker)
    running = first if upid_of(first) else second
    job_id = load_task((first_task if running == first else second_task).id).rq_job_id
    wait_for(lambda: ScheduledJobRegistry("pve_vm_clone", connection=get_redis()).get_scheduled_time(job_id), 30,
             "the running clone's job to wait for its look", worker)
    due = ScheduledJobRegistry("pve_vm_clone", connection=get_redis()).get_scheduled_time(job_id)

    pve.state.clock.advance(CLONE)
    wait_for(lambda: len(running_clones(pve)) == 1 and upid_of(running) is None, 30,
             "the waiting clone to start and the first one to be made ready", worker)
    done = wait_for(lambda: settled((first_task if running == first else second_task).id), 30, "the first clone")
    assert done.status == "success" and done.finished_at < due.replace(tzinfo=None)  # woken, not its own look
    pve.state.clock.advance(CLONE)
    for task in (first_task, second_task):
        assert wait_for(lambda t=task: settled(t.id), 30, "both clones", worker).status == "success"
    assert pacing.in_flight("pve1") == 0 and get_redis().hlen(clone_watch.WATCHED) == 0
    waited = second_task if running == first else first_task
    with session_scope() as session:
        lines = session.execute(select(TaskLog.message).where(TaskLog.task_id == waited.id)).scalars().all()
    assert any("the clone watcher started the clone" in line for line in lines), lines  # its job took it over
