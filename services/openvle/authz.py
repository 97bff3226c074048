"""Who may see and change what: one place for every rule, used by the API, the pages and the CLI.

- admin: everything.
- teacher: what a student may, plus the events they teach (a teacher row in the event): create and
  change them, their participants, every participant's VM, stage and Task.
- student: their own VMs (start, stop, reset) and their own Tasks; the events they take part in.
An object someone may not see does not exist for them (NotFound, 404: no probing for ids); one
they see but may not change is Forbidden (403).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import Session

from openvle import targets
from openvle.accounts.identity import Actor
from openvle.db.models import Event, Participant, Role, Task, Vm
from openvle.errors import Forbidden, NotFound


def require_admin(actor: Actor, doing: str) -> None:
    if not actor.is_admin:
        raise Forbidden(f"only admins may {doing}")


def require_teacher(actor: Actor, doing: str) -> None:
    if not actor.is_teacher:
        raise Forbidden(f"only teachers and admins may {doing}")


@dataclass(frozen=True)
class Scope:
    """What a user relates to, read once per request."""

    taught: frozenset[int]  # events they teach
    attended: dict[int, int]  # event id -> their participant id, for events they take part in


def scope_of(session: Session, actor: Actor) -> Scope:
    if actor.user_id is None:
        return Scope(frozenset(), {})
    rows = session.execute(select(Participant.id, Participant.event_id, Participant.role).where(
        Participant.user_id == actor.user_id, Participant.removed_at.is_(None))).all()
    return Scope(frozenset(r.event_id for r in rows if r.role == Role.TEACHER),
                 {r.event_id: r.id for r in rows if r.role == Role.PARTICIPANT})


# --- events -------------------------------------------------------------------------------------------


def events_clause(session: Session, actor: Actor) -> ColumnElement[bool]:
    if actor.is_admin:
        return true()
    scope = scope_of(session, actor)
    ids = scope.taught | set(scope.attended)
    return Event.id.in_(ids) if ids else false()


def event(session: Session, actor: Actor, event_id: int, manage: str | None = None) -> Event:
    """The event if the actor sees it; with `manage` (what they want to do), only if they may."""
    found = session.get(Event, event_id)
    if found is None:
        raise NotFound(f"event {event_id} does not exist")
    if actor.is_admin:
        return found
    scope = scope_of(session, actor)
    if event_id not in scope.taught and event_id not in scope.attended:
        raise NotFound(f"event {event_id} does not exist")
    if manage is not None and event_id not in scope.taught:
        raise Forbidden(f"only its teachers and admins may {manage} event {event_id}")
    return found


def teaches(session: Session, actor: Actor, event_id: int) -> bool:
    return actor.is_admin or event_id in scope_of(session, actor).taught


# --- VMs ------------------------------------------------------------------------------------------------


def vms_clause(session: Session, actor: Actor) -> ColumnElement[bool]:
    if actor.is_admin:
        return true()
    taught = scope_of(session, actor).taught
    own = Vm.user_id == actor.user_id
    return or_(own, Vm.event_id.in_(taught)) if taught else own


def vm(session: Session, actor: Actor, vm_id: int) -> Vm:
    found = session.get(Vm, vm_id)
    if found is None or not (actor.is_admin or found.user_id == actor.user_id
                             or (found.event_id is not None and found.event_id in scope_of(session, actor).taught)):
        raise NotFound(f"VM {vm_id} does not exist")
    return found


# --- Tasks ----------------------------------------------------------------------------------------------


def tasks_branches(session: Session, actor: Actor) -> list[ColumnElement[bool]]:
    """Tasks the actor sees, as alternatives (any one suffices): those they asked for, those of their
    VMs and their own steps in events, and (teachers) everything of the events they teach. Each
    alternative alone is served by an index; a list asks them one by one rather than OR-ed (an OR
    makes the database read the whole table)."""
    if actor.is_admin:
        return [true()]
    scope = scope_of(session, actor)
    own_vms = select(Vm.id).where(Vm.user_id == actor.user_id)
    clauses = [Task.requested_by == actor.requested_by, Task.vm_id.in_(own_vms)]
    if scope.taught:
        clauses += [Task.event_id.in_(scope.taught),
                    Task.vm_id.in_(select(Vm.id).where(Vm.event_id.in_(scope.taught)))]
    for event_id, participant_id in scope.attended.items():
        if event_id not in scope.taught:
            clauses.append(and_(Task.event_id == event_id,
                                Task.target.like(targets.below(targets.participant(event_id, participant_id)))))
    return clauses


def tasks_clause(session: Session, actor: Actor) -> ColumnElement[bool]:
    """Tasks the actor sees, as one condition (see tasks_branches)."""
    return or_(*tasks_branches(session, actor))


def task(session: Session, actor: Actor, task_id: int) -> Task:
    found = session.execute(select(Task).where(Task.id == task_id, tasks_clause(session, actor))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"task {task_id} does not exist")
    return found
