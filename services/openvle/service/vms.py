"""VMs as users see them: listed and shown by who may see them; start, stop and reset by their owner,
the owner's teachers and admins; migrate by admins. An action asked again while the same one is in
flight returns that Task (enqueued once)."""

from __future__ import annotations

from sqlalchemy import select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import Event, EventStatus, Node, Participant, Task, TaskStatus, User, Vm, VmState
from openvle.enqueue import one_active
from openvle.errors import Conflict, Invalid
from openvle.jobs.vms import request_action
from openvle.service import fresh_starts
from openvle.service.tasks import TaskFilter, get_task, tasks_of
from openvle.service.views import LabView, Page, TaskRequest, VmDetailView, VmView

ACTIONS = ("start", "stop", "reset", "migrate")
BREAK = (EventStatus.SUSPENDING, EventStatus.SUSPENDED)  # an event's VMs stay off


def _view(vm: Vm, owner: str | None) -> VmView:
    return VmView.model_validate({**{k: getattr(vm, k) for k in VmView.model_fields if k != "owner"},
                                  "owner": owner})


def list_vms(actor: Actor, event_id: int | None = None, state: str | None = None, node: str | None = None,
             before: int | None = None, limit: int = 100) -> Page[VmView]:
    if state is not None and state not in (*VmState.LIVE, VmState.DELETED):
        raise Invalid(f"state {state!r} is not one of {', '.join((*VmState.LIVE, VmState.DELETED))}")
    if not 1 <= limit <= 500:
        raise Invalid(f"limit must be 1 to 500, not {limit}")
    with session_scope() as session:
        query = (select(Vm, User.username).outerjoin(User, User.id == Vm.user_id)
                 .where(authz.vms_clause(session, actor)).order_by(Vm.id.desc()).limit(limit + 1))
        for column, value in ((Vm.event_id, event_id), (Vm.state, state), (Vm.node, node)):
            if value is not None:
                query = query.where(column == value)
        if before is not None:
            query = query.where(Vm.id < before)
        rows = session.execute(query).all()
        items = [_view(vm, owner) for vm, owner in rows[:limit]]
    return Page[VmView](items=items, next_before=items[-1].id if len(rows) > limit else None)


def get_vm(actor: Actor, vm_id: int) -> VmDetailView:
    with session_scope() as session:
        vm = authz.vm(session, actor, vm_id)
        owner = session.get(User, vm.user_id).username if vm.user_id else None
        view = _view(vm, owner)
    return VmDetailView(**view.model_dump(), tasks=tasks_of(actor, TaskFilter(vm_id=vm_id)))


def act(actor: Actor, vm_id: int, action: str, target_node: str | None = None) -> TaskRequest:
    if action not in ACTIONS:
        raise Invalid(f"unknown VM action {action!r}: use one of {', '.join(ACTIONS)}")
    with session_scope() as session:
        vm = authz.vm(session, actor, vm_id)
        if action == "migrate":
            authz.require_admin(actor, "migrate VMs")
        if vm.state != VmState.READY:
            raise Conflict(f"VM {vm_id} is {vm.state}: only a ready VM can {action} (wait for it, or look at its "
                           "Tasks)")
        event_id = vm.event_id
        on_break = event_id is not None and session.execute(select(Event.status).where(Event.id == event_id)).scalar() \
            in BREAK
        if on_break and action in ("start", "reset"):
            raise Conflict(f"VM {vm_id}: its event is suspended (a break), so its VMs stay off until the event is "
                           "resumed")
        if action == "migrate":
            nodes = list(session.execute(select(Node.name).order_by(Node.name)).scalars())
            if not target_node:
                raise Invalid(f"migrate needs a target node: one of {', '.join(nodes) or '(no node synced yet)'}")
            if target_node not in nodes:
                raise Invalid(f"node {target_node!r} is unknown: use one of {', '.join(nodes) or '(none synced yet)'}")
            if target_node == vm.node:
                raise Conflict(f"VM {vm_id} is already on {target_node}")
    operation = f"vm.{action}"
    # One request at a time per VM, so two clicks find each other's Task instead of making two.
    with one_active(operation, vm_id=vm_id) as running:
        if running is not None:
            return TaskRequest(task=get_task(actor, running.id), created=False)
        task = request_action(action, vm_id, target_node=target_node, requested_by=actor.requested_by,
                              event_id=event_id)
    return TaskRequest(task=get_task(actor, task.id), created=True)


# --- "my labs": one's own VMs with their state in words -------------------------------------------------

# "<what> did not work: <why>" in plain words, for the VM's operations.
OPERATION_WORDS = {"vm.clone": "Making the VM (clone)", "vm.start": "Start", "vm.stop": "Stop", "vm.reset": "Reset",
                   "vm.migrate": "Moving it to another node", "vm.delete": "Removing it",
                   "vm.fresh_start": "The fresh start"}
_RECENT_TASKS = 20  # per VM: enough to find the one in flight and the latest finished


def _state_words(vm: Vm, latest_finished: Task | None) -> str:
    if vm.state == VmState.PROVISIONING:
        failed = latest_finished is not None and latest_finished.operation == "vm.clone" \
            and latest_finished.status in (TaskStatus.ERROR, TaskStatus.CANCELLED)
        return "failed" if failed else "being cloned"
    if vm.state == VmState.READY:
        return vm.status if vm.status in ("running", "stopped") else "unknown"
    return {VmState.DELETING: "being removed", VmState.MISSING: "missing"}.get(vm.state, vm.state)


def lab_of(vm: Vm, event_name: str | None, tasks: list[Task], owner: str | None,
           event_status: str | None = None, fresh_start_at=None) -> LabView:
    """`tasks`: the VM's latest Tasks, newest first; `event_status` and the participant's
    `fresh_start_at` say whether a fresh start is possible."""
    active = next((t for t in tasks if t.status in TaskStatus.ACTIVE and t.operation != "vm.clone"), None)
    finished = next((t for t in tasks if t.status in TaskStatus.FINAL), None)
    error = None
    if finished is not None and finished.status in (TaskStatus.ERROR, TaskStatus.CANCELLED):
        what = OPERATION_WORDS.get(finished.operation, finished.operation)
        error = f"{what} did not work: {finished.error or 'it was cancelled'}"
    state = _state_words(vm, finished)
    after = fresh_starts.allowed_again_at(fresh_start_at)
    return LabView(vm=_view(vm, owner), event_name=event_name, state=state,
                   pending=active.operation.removeprefix("vm.") if active is not None else None,
                   pending_task_id=active.id if active is not None else None, last_error=error,
                   can_act=vm.state == VmState.READY and active is None and event_status not in BREAK,
                   can_fresh_start=(vm.participant_id is not None and vm.state in fresh_starts.REPLACEABLE
                                    and event_status in fresh_starts.LIVE_EVENT and active is None and after is None),
                   fresh_start_after=after)


def my_labs(actor: Actor) -> list[LabView]:
    """The caller's own VMs (not the ones they may see as a teacher), live ones only, newest first."""
    if actor.user_id is None:
        return []
    with session_scope() as session:
        rows = session.execute(
            select(Vm, Event.name, Event.status, Participant.fresh_start_at).outerjoin(Event, Event.id == Vm.event_id)
            .outerjoin(Participant, Participant.id == Vm.participant_id)
            .where(Vm.user_id == actor.user_id, Vm.state != VmState.DELETED).order_by(Vm.id.desc())).all()
        by_vm = _recent_tasks(session, [row[0].id for row in rows])
        return [lab_of(vm, name, by_vm.get(vm.id, []), actor.username, status, fresh_at)
                for vm, name, status, fresh_at in rows]


def lab(actor: Actor, vm_id: int) -> LabView:
    """One VM as a card, for whoever may see it (owner, their teacher, admin); else NotFound."""
    with session_scope() as session:
        vm = authz.vm(session, actor, vm_id)
        event = session.get(Event, vm.event_id) if vm.event_id is not None else None
        owner = session.get(User, vm.user_id).username if vm.user_id else None
        person = session.get(Participant, vm.participant_id) if vm.participant_id else None
        return lab_of(vm, event.name if event else None, _recent_tasks(session, [vm_id]).get(vm_id, []), owner,
                      event.status if event else None, person.fresh_start_at if person else None)


def _recent_tasks(session, vm_ids: list[int]) -> dict[int, list[Task]]:
    found: dict[int, list[Task]] = {}
    for vm_id in vm_ids:
        found[vm_id] = list(session.execute(
            select(Task).where(Task.vm_id == vm_id).order_by(Task.id.desc()).limit(_RECENT_TASKS)).scalars())
    return found
