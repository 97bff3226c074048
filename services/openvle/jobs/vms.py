"""VM jobs: clone and delete (pve_vm_clone); start, stop, reset, migrate (pve_vm_actions).

Every job is a small state machine that re-reads its VM row and asks Proxmox what is true, then
takes the next step, so a retry, a duplicate or a worker killed mid-way converges on the same end
state. Waiting on a Proxmox task returns CheckBack: the worker is free meanwhile, which is how the
single worker-vm-clone keeps many clones in flight across nodes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Queue, get_current_job
from sqlalchemy import select, update

from openvle import clone_watch, pacing, targets
from openvle.clients.proxmox import (
    AnswerLost,
    NotFound,
    Proxmox,
    ProxmoxError,
    ProxmoxPermanentError,
    ProxmoxTransientError,
    VmidTaken,
    dns_name,
    get_proxmox,
)
from openvle.connections import get_redis
from openvle.context import CheckBack, TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import CloneMode, Template, Vm, VmState, utcnow
from openvle.enqueue import enqueue_operation
from openvle.errors import PermanentError
from openvle.placement import choose_node, claim_vmid, release_vmid
from openvle.settings import get_settings

log = logging.getLogger("openvle.jobs.vms")

MARK = "openvle-vm-id"  # written into the description of every VM we clone: proves a VM is ours
LINGER = 1.5  # seconds a clone about to end is watched within the job, when no other job waits
LINGER_STEP = 0.25
ACTION_LOOK = 0.1  # a watched click looks this often: its end is seen within 0.1 s (one task-status call each)
_MOVES_FOLLOWED = 3  # a VM seen moving between nodes this often while we look is taken as not ours
SLOT_WAIT = 5  # seconds between checks for a free clone slot when run outside RQ (no job to wake)


# --- requests ---------------------------------------------------------------------------------------


def request_clone(template_id: int, name: str, *, event_id: int | None = None, participant_id: int | None = None,
                  requested_by: str | None = None, depends_on=()) -> tuple[int, Any]:
    """Record the VM to make, then queue its clone. Returns (VM row id, Task)."""
    with session_scope() as session:
        if session.get(Template, template_id) is None:
            raise ValueError(f"template {template_id} does not exist")
        vm = Vm(name=dns_name(name), template_id=template_id, event_id=event_id, participant_id=participant_id)
        session.add(vm)
        session.flush()
        vm_id = vm.id
    task = enqueue_operation("vm.clone", {"vm_id": vm_id}, target=targets.vm(vm_id), requested_by=requested_by,
                             depends_on=depends_on)
    return vm_id, task


def request_action(action: str, vm_id: int, *, target_node: str | None = None, requested_by: str | None = None,
                   event_id: int | None = None):
    """Start, stop, reset or migrate one VM; a VM of an event names it, so the event's Tasks show it."""
    params: dict[str, Any] = {"vm_id": vm_id}
    if action == "migrate":
        params["target"] = target_node
    else:
        params["watch"] = True  # someone is looking at the button: see it settle within a second
    target = targets.vm(vm_id, event_id)
    # Ahead of the queued steps of a deploy or archive (the same queue): a click waits only for a free worker.
    return enqueue_operation(f"vm.{action}", params, target=target, requested_by=requested_by,
                             at_front=action != "migrate")


# --- shared steps -----------------------------------------------------------------------------------


def _load(vm_id: int) -> Vm:
    with session_scope() as session:
        vm = session.execute(select(Vm).where(Vm.id == vm_id)).scalar_one_or_none()
        if vm is None:
            raise PermanentError(f"VM record {vm_id} does not exist")
        vm.template  # noqa: B018 (load it while the session is open)
        return vm


def _save(vm_id: int, **values: Any) -> None:
    with session_scope() as session:
        session.execute(update(Vm).where(Vm.id == vm_id).values(updated_at=utcnow(), **values))


def _ours(pve: Proxmox, resource: dict, vm: Vm) -> dict | None:
    """The VM at our vmid as it is now, when it carries our mark; None for a stranger who took the id
    (or when it is gone). A clone still running may not show its description yet: then its name and
    clone lock tell. `resource` may be out of date: a clone to another node moves its config there as
    it ends, a migration too, so a config not on the node listed is looked for where the VM is now."""
    for _ in range(_MOVES_FOLLOWED):
        try:
            config = pve.vm_config(resource["node"], int(resource["vmid"]))
        except NotFound:
            moved = pve.locate(int(resource["vmid"]))
            if moved is None or moved["node"] == resource["node"]:
                return None
            resource = moved
            continue
        description = str(config.get("description") or "")
        if description:
            return resource if f"{MARK}={vm.id}" in description else None
        return resource if resource.get("lock") == "clone" and resource.get("name") == vm.name else None
    return None


def _task_age(upid: str) -> float:
    """Seconds since the Proxmox task started (its UPID carries the start time in hex)."""
    return time.time() - int(upid.split(":")[4], 16)


def _poll(pve: Proxmox, vm: Vm, timeout: int, expected: float | None = None) -> dict | CheckBack:
    """Follow the VM's Proxmox task: CheckBack while it runs, its final status when it ended OK.

    With an `expected` duration the next check is when the task should be done, not sooner.
    A failed task clears the UPID (the next step starts over from Proxmox's state) and raises.
    """
    status = pve.task_status(vm.upid)
    if status.get("status") == "running":
        age = _task_age(vm.upid)
        if age > timeout:
            raise ProxmoxTransientError(f"Proxmox task {status.get('type')} of VM {vm.vmid} still running after "
                                        f"{timeout}s")
        return CheckBack(_next_check(age, expected), f"{status.get('type')} of VM {vm.vmid} running")
    _save(vm.id, upid=None)
    error = pve.task_error(vm.upid, status)
    if error is not None:
        raise error
    return status


def _next_check(age: float, expected: float | None) -> float:
    """PVE_POLL_INTERVAL, or longer while the task is younger than it usually takes; never so long
    that a clone's slot claim (refreshed at each look) lapses meanwhile."""
    interval = get_settings().PVE_POLL_INTERVAL
    if expected is None or age >= expected:
        return interval
    return min(max(interval, expected - age), pacing.SLOT_TTL / 2)


def _refresh(vm: Vm, resource: dict) -> None:
    _save(vm.id, node=resource.get("node"), status=resource.get("status"), lock=resource.get("lock") or None)


# --- clone ------------------------------------------------------------------------------------------


def clone_vm(ctx: TaskContext, vm_id: int) -> dict | CheckBack:
    settings = get_settings()
    vm = _load(vm_id)
    if vm.state == VmState.READY:
        return {"vmid": vm.vmid, "node": vm.node, "adopted": True}
    if vm.state in (VmState.DELETING, VmState.DELETED):
        raise PermanentError(f"VM {vm.name} was deleted before its clone finished")
    pve = get_proxmox()
    template = vm.template

    job = get_current_job()
    if vm.vmid is None or vm.node is None:
        # Placed before it waits for a slot: the clone call waits in line ready to be made, by the
        # clone watcher the moment a slot frees (or by this job when woken), with no placement between.
        node = choose_node(pve, template)
        vmid = claim_vmid(pve, vm.id)
        _save(vm.id, vmid=vmid, node=node)  # recorded before cloning: a retry finds and adopts it
        vm = _load(vm_id)
        ctx.log(f"placed on {node} as VM {vmid}")

    if vm.upid is None and (handed := pacing.started_by_watcher(vm.id)) is not None:
        _save(vm.id, upid=handed, lock="clone")  # the VM row is where a clone's task is kept from now on
        pacing.clear_started(vm.id)
        vm = _load(vm_id)
        ctx.log(f"the clone watcher started the clone to VM {vm.vmid} on {vm.node} as a slot freed")

    if vm.upid:
        watched = clone_watch.watcher_alive()
        try:
            result = _watch_clone(pve, vm, settings.PVE_CLONE_TIMEOUT, pacing.expected_clone_seconds(template.id),
                                  ctx.queue, linger=not watched)
        except ProxmoxError:
            _clone_over(vm)
            _remove_half_made(pve, vm)
            raise
        if isinstance(result, CheckBack):
            pacing.acquire(vm.node, template.id, vm.id, settings.PVE_CLONE_CONCURRENCY)  # keep our claim alive
            clone_watch.watch(vm.id, vm.upid, vm.node, template.id, job.id if job else None)  # also when adopted
            if watched:
                result = CheckBack(clone_watch.WATCHED_LOOK, result.reason)
            pacing.seen_running(vm.id, _task_age(vm.upid), result.seconds)
            ctx.progress(min(90, 10 + ctx.checks * 2), f"cloning {template.name} to VM {vm.vmid} on {vm.node}")
            return result
        pacing.learn_clone_seconds(template.id, vm.id, _task_age(vm.upid))
        _clone_over(vm)

    found = pve.locate(vm.vmid)
    if found is not None and (mine := _ours(pve, found, vm)) is not None:
        found = mine
    elif found is not None:
        # Someone outside took our id between the claim and the clone: step over it.
        vmid = claim_vmid(pve, vm.id, also_skip={vm.vmid})
        ctx.log(f"VM id {vm.vmid} is used by another VM; using {vmid}", level="warning")
        _save(vm.id, vmid=vmid)
        return CheckBack(1, "VM id changed")
    if found is not None and found.get("lock") == "clone":
        # Our clone runs but its task id was lost (the worker died right after starting it).
        if ctx.checks * settings.PVE_POLL_INTERVAL > settings.PVE_CLONE_TIMEOUT:
            raise ProxmoxTransientError(f"VM {vm.vmid} still locked by a clone after {settings.PVE_CLONE_TIMEOUT}s")
        pacing.acquire(vm.node, template.id, vm.id, settings.PVE_CLONE_CONCURRENCY)
        return CheckBack(settings.PVE_POLL_INTERVAL, f"clone of VM {vm.vmid} still running")
    if found is not None:
        _clone_over(vm)  # its end was seen here, not through its task (whose answer was lost): free its slot
        return _finish_clone(pve, vm, found)

    call = _clone_call(vm, template, ctx.task_id)
    if not pacing.acquire(vm.node, template.id, vm.id, settings.PVE_CLONE_CONCURRENCY):
        return _wait_for_slot(ctx, job, vm.node, template, {"vm_id": vm.id, "clone": call})
    if job is not None:
        pacing.stop_waiting(job.id)
    holder = f"job:{job.id if job is not None else ctx.task_id}"
    held = pacing.hold_start(vm.id, holder)
    if held is None:
        pacing.release(vm.node, template.id, vm.id)
        raise PermanentError(f"VM {vm.name} was deleted before its clone started")
    if not held or pacing.started_by_watcher(vm.id) is not None:
        pacing.let_go_start(vm.id, holder)
        return CheckBack(1, f"the clone watcher starts the clone to VM {vm.vmid}")  # followed at the next check
    try:
        return _start_clone(ctx, pve, vm, template, call, job)
    finally:
        pacing.let_go_start(vm.id, holder)


def _clone_call(vm: Vm, template: Template, task_id: int) -> dict:
    """Proxmox.clone's arguments for this VM (also made by the clone watcher for a waiting clone)."""
    return {
        "node": template.node, "template_vmid": template.pve_vmid, "newid": vm.vmid, "name": vm.name,
        "full": template.clone_mode == CloneMode.FULL,
        "target": vm.node if vm.node != template.node else None,
        "description": f"{MARK}={vm.id}\nMade by OpenVLE Tasks (task {task_id}).",
    }


def _start_clone(ctx: TaskContext, pve: Proxmox, vm: Vm, template: Template, call: dict, job) -> CheckBack:
    try:
        upid = pve.clone(**call)
    except AnswerLost:
        # It may have been carried out: look (at the next check) before cloning again, keeping the slot.
        ctx.log(f"the answer to the clone of VM {vm.vmid} was lost; looking before trying again", level="warning")
        return CheckBack(1, f"clone of VM {vm.vmid}: answer lost")
    except VmidTaken:
        found = pve.locate(vm.vmid)
        if found is not None and _ours(pve, found, vm):  # an earlier request of ours was carried out
            ctx.log(f"VM {vm.vmid} is already our clone; following it", level="warning")
            return CheckBack(1, f"clone of VM {vm.vmid} found")
        pacing.release(vm.node, template.id, vm.id)
        vmid = claim_vmid(pve, vm.id, also_skip={vm.vmid})
        ctx.log(f"VM id {vm.vmid} was taken meanwhile; using {vmid}", level="warning")
        _save(vm.id, vmid=vmid)
        return CheckBack(1, "VM id changed")
    except ProxmoxError:
        pacing.release(vm.node, template.id, vm.id)
        raise
    _save(vm.id, upid=upid, lock="clone")
    clone_watch.watch(vm.id, upid, vm.node, template.id, job.id if job is not None else None)
    ctx.progress(10, f"cloning {template.name} to VM {vm.vmid} on {vm.node}")
    if clone_watch.watcher_alive():  # woken when the watcher sees it end; this look only if it does not
        first_look = clone_watch.WATCHED_LOOK
    else:
        first_look = _next_check(0, pacing.expected_clone_seconds(template.id))
    pacing.clone_started(vm.id, first_look)
    return CheckBack(first_look, f"clone to VM {vm.vmid} started")


def _wait_for_slot(ctx: TaskContext, job, node: str, template: Template, start: dict) -> CheckBack:
    """In line for a slot of `node` and the template, with its clone call (`start`) ready: started by
    the clone watcher or woken by the release of a slot, and looking by itself after WAIT_FALLBACK
    in case both miss it."""
    limit = get_settings().PVE_CLONE_CONCURRENCY
    if job is not None:
        pacing.wait_for_slot(job.id, node, template.id, limit, start)
    where = f"node {node} or template {template.name}"
    ctx.progress(5, f"waiting for a clone slot of {where}")
    return CheckBack(pacing.WAIT_FALLBACK if job is not None else SLOT_WAIT, f"clone slots of {where} are full")


def _clone_over(vm: Vm) -> None:
    """The clone task ended (well or not): its slot goes to the next clone, the watcher stops following it."""
    pacing.release(vm.node or "", vm.template_id, vm.id)
    clone_watch.unwatch(vm.id)


def _watch_clone(pve: Proxmox, vm: Vm, timeout: int, expected: float | None, queue: str,
                 linger: bool = True) -> dict | CheckBack:
    """Look at the clone; when it should end within LINGER s and no other job waits on this queue,
    keep watching here (unless the clone watcher does). RQ calls back in whole seconds, and every
    second a slot sits idle after its clone ended, the clones waiting for it wait too."""
    result = _poll(pve, vm, timeout, expected)
    deadline = time.monotonic() + (LINGER if linger else 0)
    while (isinstance(result, CheckBack) and result.seconds <= LINGER and time.monotonic() < deadline
           and Queue(queue, connection=get_redis()).count == 0):
        pacing.seen_running(vm.id, _task_age(vm.upid), LINGER_STEP)
        time.sleep(LINGER_STEP)
        result = _poll(pve, vm, timeout, expected)
    return result


def _finish_clone(pve: Proxmox, vm: Vm, found: dict) -> dict:
    tags = get_settings().PVE_TAG
    if vm.event_id is not None:
        tags += f";event-{vm.event_id}"
    pve.set_config(found["node"], vm.vmid, tags=tags)
    _save(vm.id, state=VmState.READY, node=found["node"], status=found.get("status"), lock=None, upid=None)
    log.info("VM %s ready on %s", vm.vmid, found["node"])
    return {"vmid": vm.vmid, "node": found["node"]}


def _remove_half_made(pve: Proxmox, vm: Vm) -> None:
    """A failed clone task normally removes its VM; if ours is still there unlocked, destroy it."""
    try:
        found = pve.locate(vm.vmid)
        mine = _ours(pve, found, vm) if found is not None and not found.get("lock") else None
        if mine is not None:
            pve.destroy(mine["node"], vm.vmid)
            log.warning("destroyed the half-made clone VM %s", vm.vmid)
    except ProxmoxError as exc:  # the next attempt looks again
        log.warning("could not check for a half-made clone of VM %s: %s", vm.vmid, exc)


# --- delete -----------------------------------------------------------------------------------------


def delete_vm(ctx: TaskContext, vm_id: int) -> dict | CheckBack:
    settings = get_settings()
    vm = _load(vm_id)
    if vm.state == VmState.DELETED:
        return {"vmid": vm.former_vmid, "already": True}
    if vm.state != VmState.DELETING:
        _save(vm.id, state=VmState.DELETING)
    if not pacing.forbid_start(vm.id):  # its clone call is being made: delete that clone at the next look
        return CheckBack(1, f"the clone of VM {vm.vmid} is being started")
    if vm.vmid is None:
        _save(vm.id, state=VmState.DELETED)
        return {"vmid": None}
    pve = get_proxmox()
    if vm.upid:
        result = _poll(pve, vm, settings.PVE_ACTION_TIMEOUT)
        if isinstance(result, CheckBack):
            return result
    found = pve.locate(vm.vmid)
    found = _ours(pve, found, vm) if found is not None else None
    if found is None:
        # Gone: the VM id goes back to the range (the row keeps it as former_vmid).
        _save(vm.id, state=VmState.DELETED, status=None, lock=None, upid=None, vmid=None, former_vmid=vm.vmid)
        release_vmid(vm.vmid, vm.id)
        _clone_over(vm)
        return {"vmid": vm.vmid, "node": vm.node}
    _refresh(vm, found)
    if found.get("lock"):
        return _wait_for_lock(ctx, vm, found)
    if found.get("status") == "running":
        upid = pve.stop(found["node"], vm.vmid)
        ctx.progress(30, f"stopping VM {vm.vmid}")
    else:
        upid = pve.destroy(found["node"], vm.vmid)
        ctx.progress(60, f"destroying VM {vm.vmid}")
    _save(vm.id, upid=upid)
    return CheckBack(settings.PVE_POLL_INTERVAL, f"VM {vm.vmid}: {upid.split(':')[5]}")


def _wait_for_lock(ctx: TaskContext, vm: Vm, found: dict) -> CheckBack:
    settings = get_settings()
    if ctx.checks * settings.PVE_POLL_INTERVAL > settings.PVE_ACTION_TIMEOUT:
        raise ProxmoxTransientError(f"VM is locked ({found['lock']}) for more than {settings.PVE_ACTION_TIMEOUT}s")
    return CheckBack(settings.PVE_POLL_INTERVAL, f"VM {vm.vmid} is locked ({found['lock']})")


# --- power and placement ----------------------------------------------------------------------------


def _act(ctx: TaskContext, vm_id: int, action: str, target: str | None = None) -> dict | CheckBack:
    settings = get_settings()
    vm = _load(vm_id)
    if vm.state != VmState.READY:
        raise PermanentError(f"VM {vm.name} is {vm.state}, not ready: nothing to {action}")
    pve = get_proxmox()
    if vm.upid:
        task_type = vm.upid.split(":")[5]
        result = _poll(pve, vm, settings.PVE_ACTION_TIMEOUT)
        if isinstance(result, CheckBack):
            return result
        if task_type in _ENDED_BY.get(action, ()):  # its own task ended well: no second look at the VM
            return _done(pve, vm, action)
    found = pve.locate(vm.vmid)
    found = _ours(pve, found, vm) if found is not None else None
    if found is None:
        _save(vm.id, state=VmState.MISSING, missing_since=utcnow())
        raise ProxmoxPermanentError(f"VM {vm.vmid} ({vm.name}) no longer exists in Proxmox")
    _refresh(vm, found)
    if found.get("lock"):
        return _wait_for_lock(ctx, vm, found)
    node, running = found["node"], found.get("status") == "running"
    if action == "start" or (action == "reset" and not running):
        if running:
            return _done(pve, vm, action)
        upid = pve.start(node, vm.vmid)
    elif action == "stop":
        if not running:
            return _done(pve, vm, action)
        upid = pve.stop(node, vm.vmid)
    elif action == "reset":
        upid = pve.reset(node, vm.vmid)
    elif action == "migrate":
        if node == target:
            return _done(pve, vm, action)
        upid = pve.migrate(node, vm.vmid, target, online=running)
    else:
        raise PermanentError(f"unknown VM action {action!r}")
    _save(vm.id, upid=upid)
    ctx.progress(30, f"{action} of VM {vm.vmid} on {node}")
    return CheckBack(settings.PVE_POLL_INTERVAL, f"{action} of VM {vm.vmid} running")


# The Proxmox tasks whose good end is the end of an action (a stopped VM's reset starts it).
_ENDED_BY = {"start": ("qmstart",), "stop": ("qmstop",), "reset": ("qmreset", "qmstart")}


def _done(pve: Proxmox, vm: Vm, action: str) -> dict:
    found = pve.locate(vm.vmid) or {}
    _refresh(vm, {"node": found.get("node", vm.node), "status": found.get("status"), "lock": found.get("lock")})
    return {"vmid": vm.vmid, "node": found.get("node", vm.node), "status": found.get("status"), "action": action}


def start_vm(ctx: TaskContext, vm_id: int, watch: bool = False) -> dict | CheckBack:
    return _watched(ctx, vm_id, "start", watch)


def stop_vm(ctx: TaskContext, vm_id: int, watch: bool = False) -> dict | CheckBack:
    return _watched(ctx, vm_id, "stop", watch)


def reset_vm(ctx: TaskContext, vm_id: int, watch: bool = False) -> dict | CheckBack:
    """Restart a running VM hard; a stopped VM is started (the end state is the same: running)."""
    return _watched(ctx, vm_id, "reset", watch)


def _watched(ctx: TaskContext, vm_id: int, action: str, watch: bool) -> dict | CheckBack:
    """A click (`watch`) is followed here for up to PVE_ACTION_WATCH s: RQ calls back in whole seconds
    after PVE_POLL_INTERVAL, and the person who clicked waits for every one of them. Steps of a
    deploy or archive do not watch: nobody waits on one of them, and a held worker delays the rest."""
    result = _act(ctx, vm_id, action)
    deadline = time.monotonic() + (get_settings().PVE_ACTION_WATCH if watch else 0)
    while isinstance(result, CheckBack) and time.monotonic() < deadline:
        time.sleep(ACTION_LOOK)
        result = _act(ctx, vm_id, action)
    return result


def migrate_vm(ctx: TaskContext, vm_id: int, target: str) -> dict | CheckBack:
    """Move the VM to `target`; a running VM migrates online."""
    if not target:
        raise PermanentError("migrate needs a target node")
    return _act(ctx, vm_id, "migrate", target)
