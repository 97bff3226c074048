"""A fresh start of one VM as people ask for it: the student whose VM it is, their teacher or an
admin; at most once per RESET_TO_TEMPLATE_COOLDOWN per participant (the answer says when it is
allowed next); only while the VM's event is deployed (a suspended event's VMs stay off). Asked
again while one is in flight, the answer is that Task. The work: jobs/fresh_starts.py."""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import update

from openvle import authz, targets
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import Event, EventStatus, Participant, Vm, VmState, utcnow
from openvle.enqueue import enqueue_operation, one_active
from openvle.errors import Conflict, TooSoon
from openvle.service.tasks import get_task
from openvle.service.views import TaskRequest
from openvle.settings import get_settings

OPERATION = "vm.fresh_start"
REPLACEABLE = (VmState.READY, VmState.MISSING)  # a broken VM may be gone from Proxmox already
LIVE_EVENT = (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)


def allowed_again_at(fresh_start_at: dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the participant may ask again; None when they may now."""
    if fresh_start_at is None:
        return None
    at = fresh_start_at + dt.timedelta(seconds=get_settings().RESET_TO_TEMPLATE_COOLDOWN)
    return at if at > (now or utcnow()) else None


def fresh_start(actor: Actor, vm_id: int) -> TaskRequest:
    with session_scope() as session:
        vm = authz.vm(session, actor, vm_id)
        event = session.get(Event, vm.event_id) if vm.event_id is not None else None
        if vm.participant_id is None or event is None:
            raise Conflict(f"VM {vm_id} belongs to no participant of an event: there is no template copy to "
                           "start afresh from")
    # One request at a time per VM: two clicks find each other's Task, never two fresh starts.
    with one_active(OPERATION, vm_id=vm_id) as running:
        if running is not None:
            return TaskRequest(task=get_task(actor, running.id), created=False)
        with session_scope() as session:
            vm, event = session.get(Vm, vm_id), session.get(Event, vm.event_id)
            person = session.get(Participant, vm.participant_id)
            if event.status not in LIVE_EVENT:
                raise Conflict(f"VM {vm_id}: its event is {event.status.replace('_', ' ')}: a fresh start is possible "
                               "while the event is deployed")
            if vm.state not in REPLACEABLE:
                raise Conflict(f"VM {vm_id} is {vm.state}: only a ready (or missing) VM can be started afresh "
                               "(wait for it, or look at its Tasks)")
            now = utcnow()
            next_at = allowed_again_at(person.fresh_start_at, now)
            if next_at is not None:
                wait = math.ceil((next_at - now).total_seconds())
                raise TooSoon(f"VM {vm_id} was started afresh at {person.fresh_start_at:%Y-%m-%d %H:%M} UTC: one "
                              f"fresh start per {_span(get_settings().RESET_TO_TEMPLATE_COOLDOWN)} "
                              f"(RESET_TO_TEMPLATE_COOLDOWN); the next is possible from {next_at:%Y-%m-%d %H:%M:%S} "
                              f"UTC, in {_span(wait)}", retry_after=wait)
            session.execute(update(Participant).where(Participant.id == person.id).values(fresh_start_at=now))
            where = targets.vm(vm.id, vm.event_id, "fresh_start")
        task = enqueue_operation(OPERATION, {"vm_id": vm_id}, target=where, requested_by=actor.requested_by)
    return TaskRequest(task=get_task(actor, task.id), created=True)


def _span(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
