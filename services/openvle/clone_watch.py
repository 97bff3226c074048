"""The clone watcher: one process beside each clone worker, seeing every running clone of a node in
one call and freeing its slot the moment it ends.

Without it, each clone job looks at its own Proxmox task when it should be done, and RQ calls back
in whole seconds, one short job after another on the clone worker: about a second per clone in
which its slot sits idle. The watcher lists the node's active clone tasks (GET
/nodes/{node}/tasks?source=active) every WATCH_INTERVAL s; for a clone that ended it releases the
slot and moves the ended clone's own check-back to the front of the queue, so its VM is made ready.
Then it fills every free slot at once: a waiting clone that is placed left its clone call in the
line (pacing.WAITER_STARTS), and the watcher makes that call itself (holding the VM's start, as the
job would), records the task for the job and follows it; the job, moved behind the queued work,
takes the task over as if it had started it. A waiter not placed yet is woken, as a release would.

What stays safe: slots stay in Redis (pacing), claimed by the clone jobs and refreshed by both
the jobs and the watcher; the clones to watch are in Redis (WATCHED), so a watcher started again
or on another replica picks them up. One watcher leads at a time (LEADER, a lease renewed each
round): when its process dies the lease lapses within LEASE s and another replica's watcher takes
over, and the clone jobs check back by themselves meanwhile (vms._next_check), as they do without
any watcher.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections import defaultdict

from openvle import pacing
from openvle.clients.proxmox import AnswerLost, ProxmoxError, get_proxmox, upid_node
from openvle.connections import get_redis
from openvle.settings import get_settings
from openvle.wake import to_front

log = logging.getLogger("openvle.clone_watch")

WATCHED = "openvle:clone-watch"  # hash: VM row id -> {"upid", "node" (of the slot), "template", "job"}
LEADER = "openvle:clone-watcher"  # the leading watcher's name, with a lease
LEASE = 10  # seconds a watcher leads without renewing; a dead one's lead lapses after this
WATCH_INTERVAL = 0.25  # seconds between two looks at the nodes' task lists
LIST_LIMIT = 500  # tasks asked per node; a list this long may be cut, so absence then proves nothing
CLONE_TASK = "qmclone"
# With a clone watcher leading, a running clone's job looks this long after (the watcher wakes it at
# the clone's end); it looks by itself only when the watcher misses it (a node's list unreadable).
WATCHED_LOOK = 30

# Lead (or keep leading) for LEASE s: True when this watcher leads.
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
"""


def watch(vm_id: int, upid: str, node: str, template_id: int, job_id: str | None) -> None:
    """Have the watcher follow the clone of VM row `vm_id` (task `upid`, slot on `node`)."""
    if not get_settings().PVE_CLONE_WATCHER:  # no watcher runs: nothing would ever read the entry
        return
    entry = {"upid": upid, "node": node, "template": template_id, "job": job_id}
    get_redis().hset(WATCHED, str(vm_id), json.dumps(entry))


def unwatch(vm_id: int) -> None:
    get_redis().hdel(WATCHED, str(vm_id))


def watcher_alive() -> bool:
    """True while some watcher leads: a clone job may then wait long and be woken at its clone's end."""
    return bool(get_redis().exists(LEADER))


class Watcher:
    def __init__(self, name: str | None = None):
        self.name = name or f"{socket.gethostname()}.{os.getpid()}"
        self._unreachable: set[str] = set()  # nodes whose list failed (said once, and once when back)

    def lead(self) -> bool:
        redis = get_redis()
        return bool(redis.register_script(_LEAD)(keys=[LEADER], args=[self.name, LEASE]))

    def step(self) -> int:
        """One look at every node with a watched clone; returns how many clones were seen ended."""
        redis = get_redis()
        by_node: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for vm_id, raw in redis.hgetall(WATCHED).items():  # read before the lists: a clone in it is listed
            entry = json.loads(raw)
            by_node[upid_node(entry["upid"])].append((vm_id.decode(), entry))
        ended = 0
        for node, entries in by_node.items():
            finished = self._ended(node, entries)
            if finished is None:
                continue
            for vm_id, entry in entries:
                if entry["upid"] in finished:
                    self._clone_ended(int(vm_id), entry)
                    ended += 1
                else:
                    pacing.refresh(entry["node"], int(entry["template"]), int(vm_id))
        self.fill_free_slots()
        return ended

    def fill_free_slots(self) -> int:
        """Start the oldest waiting clones that fit in the free slots (their jobs wait to be woken);
        returns how many were started or woken."""
        claims: dict[tuple[str, ...], int] = {}  # slot sets looked at in this pass -> claims held
        done = 0
        for waiter in pacing.waiters():
            slots = tuple(waiter.slots)
            if slots not in claims:
                claims[slots] = pacing.claimed(list(slots))
            if claims[slots] >= waiter.limit:
                continue
            # A waiter not placed yet (one from before placing came first) is woken to place itself.
            if self._start(waiter) if waiter.start else pacing.wake_waiter(waiter.job_id):
                claims[slots] += 1
                done += 1
        return done

    def _start(self, waiter: pacing.Waiter) -> bool:
        """Make the waiting clone's call: True when it started (or its job was woken to make it)."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        redis = get_redis()
        vm_id, call = int(waiter.start["vm_id"]), waiter.start["clone"]
        if not pacing.hold_start(vm_id, self.name):
            return False  # its job makes the call right now, or the VM is being deleted
        try:
            try:
                job = Job.fetch(waiter.job_id, connection=redis)
            except NoSuchJobError:
                pacing.stop_waiting(waiter.job_id)
                return False
            if job.get_status(refresh=False) != "scheduled":  # it runs (or ran): the job makes its own call
                return False
            if not pacing.acquire(waiter.node, waiter.template_id, vm_id, waiter.limit):
                return False
            try:
                upid = get_proxmox().clone(**call)
            except ProxmoxError as exc:
                # The job makes the call again and decides, as when it makes it itself (an answer lost
                # may mean the clone runs: it looks first, keeping the slot).
                log.warning("the clone to VM %s, started for a waiting clone, failed: %s (its job tries)",
                            call["newid"], exc)
                if not isinstance(exc, AnswerLost):
                    pacing.release(waiter.node, waiter.template_id, vm_id, wake=False)
                pacing.move_to_queue(redis, job)
                return isinstance(exc, AnswerLost)  # the slot stays claimed only then
            pacing.started_by_watcher(vm_id, upid)
            watch(vm_id, upid, waiter.node, waiter.template_id, waiter.job_id)
            pacing.clone_started(vm_id, WATCHED_LOOK)
            # Behind the queued work: its job only records the task and shows the clone running.
            pacing.move_to_queue(redis, job, at_front=False)
            pacing.stop_waiting(waiter.job_id)
            log.info("started the clone to VM %s on %s for a waiting clone (job %s)", call["newid"], waiter.node,
                     waiter.job_id)
            return True
        finally:
            pacing.let_go_start(vm_id, self.name)

    def _ended(self, node: str, entries: list[tuple[str, dict]]) -> set[str] | None:
        """The UPIDs of `entries` whose task no longer runs; None when the node's list is not known."""
        try:
            listed = get_proxmox().active_tasks(node, CLONE_TASK, LIST_LIMIT)
        except ProxmoxError as exc:  # the clone jobs look by themselves meanwhile
            if node not in self._unreachable:
                log.warning("cannot list the clone tasks of %s: %s (the clone jobs look by themselves)", node, exc)
                self._unreachable.add(node)
            return None
        if node in self._unreachable:
            log.info("listing the clone tasks of %s again", node)
            self._unreachable.discard(node)
        running = {t.get("upid") for t in listed if t.get("status") == "RUNNING"}
        ended = {t.get("upid") for t in listed if t.get("status") != "RUNNING"}
        if len(listed) < LIST_LIMIT:  # the whole list: a task not in it was archived, so it ended
            ended |= {entry["upid"] for _, entry in entries if entry["upid"] not in running}
        return ended

    def _clone_ended(self, vm_id: int, entry: dict) -> None:
        """Its own check-back to the front first, then the slot released: the waiting clone woken by the
        release goes in front of it, so the next clone starts before this one is made ready."""
        woken = _wake_job(entry.get("job"))
        pacing.release(entry["node"], int(entry["template"]), vm_id, wake=False)  # fill_free_slots starts the next
        if woken:
            unwatch(vm_id)
        log.debug("clone of VM row %s ended: slot on %s released", vm_id, entry["node"])


def _wake_job(job_id: str | None) -> bool:
    """Run the clone job's check-back now. True once nothing is left to wake (moved, already queued or
    done, or gone); False while the job still runs its previous step (the next round tries again)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    if not job_id:
        return True
    redis = get_redis()
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return True
    status = job.get_status(refresh=False)
    if status == "scheduled":
        return pacing.move_to_queue(redis, job) or job.get_status() != "scheduled"
    if status == "queued":  # a clone this watcher started, its job still behind the queued work
        to_front(redis, job)
        return True
    return status not in ("started", "deferred")


def run() -> None:
    """The watcher's loop, in its own process beside the clone worker (worker.run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops it (a Ctrl-C reaches the whole group)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    watcher = Watcher()
    log.info("clone watcher %s started", watcher.name)
    leading, failing = False, None
    while True:
        try:
            if watcher.lead():
                if not leading:
                    log.info("clone watcher %s leads", watcher.name)
                    leading = True
                watcher.step()
            else:
                leading = False
                time.sleep(LEASE / 3)
                continue
            if failing is not None:
                log.info("clone watcher %s watches again", watcher.name)
                failing = None
        except Exception as exc:  # a store away or a surprise: the jobs look by themselves, try again
            if failing != type(exc).__name__:  # said once, not every second
                log.warning("clone watcher: %s: %s (trying again every second)", type(exc).__name__, exc)
                failing = type(exc).__name__
            time.sleep(1)
        time.sleep(WATCH_INTERVAL)
