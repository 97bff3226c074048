"""A fresh start of one VM (core_periodic): a new copy of the template in place of a broken VM,
without changing the participant's access link or password. One orchestrator Task
(`vm.fresh_start`) plans a chain with RQ dependencies and checks back until it settled:

    vm.clone (new) → vm.start (new) → guac.move_access (old → new) → vm.delete (old)

The replacement's row is recorded on the old one (`replaced_by_id`, and `replaces_id` on it)
before anything is cloned, so a retried or repeated orchestrator clones into the same row (the
clone job adopts what Proxmox already made) and never makes two new VMs; the old VM is deleted
only after the access moved. The new VM takes the old one's name: the Guacamole connection
(found by that name, its host is that name) is the same object with the same id and link.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from openvle import targets
from openvle.connections import get_redis
from openvle.context import CheckBack, TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Participant, Role, Task, TaskStatus, Vm, VmState
from openvle.enqueue import run_step
from openvle.errors import PermanentError
from openvle.operations import operation
from openvle.targets import Target

log = logging.getLogger("openvle.jobs.fresh_starts")

FOLLOW_EVERY = 2  # seconds between the orchestrator's looks at its chain
STEPS = ("clone", "start", "access", "delete")  # the chain, in order (each step's target ends so)


def target(vm: Vm, step: str) -> str:
    """"event:4/vm:17/fresh_start/clone": a VM's own steps are no stage of the event's runs."""
    return targets.vm(vm.id, vm.event_id, "fresh_start", step)


@operation("vm.fresh_start", queue="core_periodic")
def fresh_start(ctx: TaskContext, vm_id: int) -> dict | CheckBack:
    by = f"task:{ctx.task_id}"
    if ctx.checks == 0:
        new_id, planned = plan(vm_id, by)
        ctx.log(f"VM record {new_id} replaces VM record {vm_id}: {planned} step(s) planned")
    return _follow(ctx, vm_id, by)


def plan(vm_id: int, by: str) -> tuple[int, int]:
    """The replacement's row (made once), then the chain's steps this run has not done yet."""
    with get_redis().lock(f"openvle:vm:{vm_id}:fresh-start", timeout=300, blocking_timeout=300):
        old, new = _replacement(vm_id)
        with session_scope() as session:
            teachers = list(session.execute(select(Participant.user_id).where(
                Participant.event_id == old.event_id, Participant.role == Role.TEACHER,
                Participant.removed_at.is_(None))).scalars()) if old.event_id is not None else []
        steps, previous = 0, []
        chain = (("clone", "vm.clone", {"vm_id": new.id}), ("start", "vm.start", {"vm_id": new.id}),
                 ("access", "guac.move_access", {"old_vm_id": old.id, "new_vm_id": new.id, "teacher_ids": teachers}),
                 ("delete", "vm.delete", {"vm_id": old.id}))
        for step, op, params in chain:
            previous = [run_step(op, params, target=target(old, step), run=by, depends_on=previous)]
            steps += 1
        return new.id, steps


def _replacement(vm_id: int) -> tuple[Vm, Vm]:
    """(old, new): the new row is made and named on the old one in one transaction, or found."""
    with session_scope() as session:
        old = session.get(Vm, vm_id)
        if old is None:
            raise PermanentError(f"VM record {vm_id} does not exist")
        new = session.get(Vm, old.replaced_by_id) if old.replaced_by_id else None
        if new is None or new.state in (VmState.DELETING, VmState.DELETED, VmState.MISSING):
            if old.state in (VmState.DELETING, VmState.DELETED):
                raise PermanentError(f"VM {old.name} is {old.state}: there is nothing to replace any more")
            new = Vm(name=old.name, template_id=old.template_id, event_id=old.event_id,
                     participant_id=old.participant_id, user_id=old.user_id, replaces_id=old.id)
            session.add(new)
            session.flush()
            old.replaced_by_id = new.id
        session.flush()
        session.expunge_all()
        return old, new


def _follow(ctx: TaskContext, vm_id: int, by: str) -> dict | CheckBack:
    with session_scope() as session:
        steps = session.execute(select(Task.id, Task.target, Task.status, Task.error)
                                .where(Task.requested_by == by).order_by(Task.id)).all()
    settled = [s for s in steps if s.status in TaskStatus.FINAL]
    if len(settled) < len(steps):
        ctx.progress(len(settled) * 100 // max(len(steps), 1), f"{len(settled)} of {len(steps)} steps settled")
        return CheckBack(FOLLOW_EVERY, f"fresh start of VM record {vm_id}: {len(settled)}/{len(steps)} settled")
    failed = next((s for s in steps if s.status == TaskStatus.ERROR), None) \
        or next((s for s in steps if s.status == TaskStatus.CANCELLED), None)
    if failed is not None:
        raise PermanentError(f"{Target.parse(failed.target).leaf} failed: {failed.error}")
    with session_scope() as session:
        new_id = session.execute(select(Vm.replaced_by_id).where(Vm.id == vm_id)).scalar()
    return {"old_vm": vm_id, "new_vm": new_id}
