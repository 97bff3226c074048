"""VMs as users see them: listed and shown by who may see them; start, stop and reset by their owner,
the owner's teachers and admins; migrate by admins. An action asked again while the same one is in
flight returns that Task (enqueued once)."""

from __future__ import annotations

from sqlalchemy import select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Node, Task, TaskStatus, User, Vm, VmState
from openvle.errors import Conflict, Invalid
from openvle.jobs.vms import request_action
from openvle.service.tasks import TaskFilter, get_task, tasks_of
from openvle.service.views import Page, TaskRequest, VmDetailView, VmView

ACTIONS = ("start", "stop", "reset", "migrate")


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
    with get_redis().lock(f"openvle:vm:{vm_id}:request", timeout=30, blocking_timeout=30):
        with session_scope() as session:
            running = session.execute(select(Task.id).where(
                Task.vm_id == vm_id, Task.operation == operation, Task.status.in_(TaskStatus.ACTIVE))
                .order_by(Task.id.desc()).limit(1)).scalar()
        if running is not None:
            return TaskRequest(task=get_task(actor, running), created=False)
        task = request_action(action, vm_id, target_node=target_node, requested_by=actor.requested_by,
                              event_id=event_id)
    return TaskRequest(task=get_task(actor, task.id), created=True)
