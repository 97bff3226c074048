"""Breaks (core_periodic): suspend a deployed event and resume it, one orchestrator Task each, as
deploy and archive are (jobs/lab_events.py): claim the event, plan the steps still missing with
`enqueue_once` per (operation, target), then check back until they settled.

- suspend, per participant with a VM: `guac.suspend_access` (their READ, and the teachers', taken
  away; connection, sharing profile, accounts and passwords kept) and `vm.stop`, side by side so a
  Guacamole outage never keeps VMs running; then `event.mark_suspended`.
- resume, per participant: the deploy's own chain from the first step missing (start → access, or
  clone → start → access → email for someone added during the break), access always given back;
  then `event.mark_resumed`. The same connection is found by its name, so links and passwords are
  the ones the participants have.
"""

from __future__ import annotations

from sqlalchemy import select

from openvle import targets
from openvle.context import CheckBack, TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import EventStatus, Role, Vm, VmState
from openvle.enqueue import enqueue_once, run_step
from openvle.event_plans import load_event, one_planner, participant_chain, participants
from openvle.jobs.lab_events import _claim, _follow_patiently, wake_orchestrator

SKIPPED = "another deploy, archive, suspend or resume of this event is in flight"


def suspend_event(ctx: TaskContext, event_id: int) -> dict | CheckBack:
    if ctx.checks == 0:
        if not _claim(event_id, ctx.task_id, EventStatus.SUSPENDING):
            return {"event_id": event_id, "skipped": SKIPPED}
        ctx.log(f"planned {plan_suspend(event_id, by=f'task:{ctx.task_id}')} step(s)")
    return _follow_patiently(ctx, event_id, "suspend")


def resume_event(ctx: TaskContext, event_id: int) -> dict | CheckBack:
    if ctx.checks == 0:
        if not _claim(event_id, ctx.task_id, EventStatus.RESUMING):
            return {"event_id": event_id, "skipped": SKIPPED}
        ctx.log(f"planned {plan_resume(event_id, by=f'task:{ctx.task_id}')} step(s)")
    return _follow_patiently(ctx, event_id, "resume")


@one_planner
def plan_suspend(event_id: int, by: str) -> int:
    everyone = participants(event_id)
    teachers = [p.user_id for p in everyone if p.role == Role.TEACHER]
    vm_ids = [p.vm_id for p in everyone if p.role == Role.PARTICIPANT and p.vm_id]
    with session_scope() as session:
        vms = {vm.id: vm for vm in session.execute(select(Vm).where(Vm.id.in_(vm_ids))).scalars()} if vm_ids else {}
    finals: list = []
    for person in everyone:
        vm = vms.get(person.vm_id)
        if person.role != Role.PARTICIPANT or vm is None or vm.state != VmState.READY:
            continue  # no VM to stop (nobody can reach one that is not ready)
        target = targets.participant(event_id, person.id)
        finals.append(run_step("guac.suspend_access", {"vm_id": vm.id, "teacher_ids": teachers},
                               target=f"{target}/revoke", run=by))
        finals.append(run_step("vm.stop", {"vm_id": vm.id}, target=f"{target}/stop", run=by))
    run_step("event.mark_suspended", {"event_id": event_id}, target=targets.event(event_id, "suspended"), run=by,
             depends_on=finals)
    return len(finals) + 1


@one_planner
def plan_resume(event_id: int, by: str) -> int:
    event = load_event(event_id)
    everyone = participants(event_id)
    teachers = [p.user_id for p in everyone if p.role == Role.TEACHER]
    finals: list = []
    steps = 0
    for person in everyone:
        if person.role != Role.PARTICIPANT:
            continue
        chain = participant_chain(event, person, teachers, by, restore_access=True)
        steps += len(chain)
        finals += chain[-1:]
    enqueue_once("event.mark_resumed", {"event_id": event_id}, target=targets.event(event_id, "resumed"),
                 requested_by=by, depends_on=finals)
    return steps + 1


def mark_suspended(ctx: TaskContext, event_id: int) -> dict:
    """Runs only when every VM of the event stopped and every access was taken away."""
    wake_orchestrator(event_id)
    return {"event_id": event_id, "suspended": True}


def mark_resumed(ctx: TaskContext, event_id: int) -> dict:
    """Runs only when every VM of the event runs again with its access given back."""
    wake_orchestrator(event_id)
    return {"event_id": event_id, "resumed": True}
