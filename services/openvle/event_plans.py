"""Planning an event's steps: which Tasks a deploy or an archive (of the whole event, or of some
participants) still needs, enqueued once each per target and chained with RQ dependencies.

The orchestrator jobs (jobs/lab_events.py, jobs/breaks.py) plan at their first run; a participant added
to or removed from a deployed event is planned at once (lab_events.py). Plans of one event run one at a
time (a Redis lock), so their look-ups of active steps never miss each other's.
"""

from __future__ import annotations

import functools
import re

from sqlalchemy import select, update

from openvle import targets
from openvle.clients.proxmox import dns_name
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Email, EmailStatus, Event, Participant, Role, User, Vm, VmState
from openvle.enqueue import enqueue_once
from openvle.errors import PermanentError


def load_event(event_id: int) -> Event:
    with session_scope() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise PermanentError(f"event {event_id} does not exist")
        event.template  # noqa: B018 (load it while the session is open)
        return event


def one_planner(plan):
    """Plans of one event run one at a time (an orchestrator, a participant added meanwhile), so
    their look-ups of active steps (enqueue_once) never miss each other's."""

    @functools.wraps(plan)
    def planned(event_id: int, *args, **kwargs):
        with get_redis().lock(f"openvle:event:{event_id}:plan", timeout=600, blocking_timeout=600):
            return plan(event_id, *args, **kwargs)

    return planned


@one_planner
def plan_deploy(event_id: int, by: str, only: list[int] | None = None) -> int:
    """Enqueue the deploy steps still missing (for `only` these participants, when given)."""
    event = load_event(event_id)
    everyone = participants(event_id)
    people = everyone if only is None else participants(event_id, ids=only)
    teachers = [p.user_id for p in everyone if p.role == Role.TEACHER]
    steps = 0
    course_task = enrol_task = None
    if event.template.moodle_course_id:
        if event.moodle_course_id is None and only is None:
            course_task = enqueue_once("event.course", {"event_id": event_id}, target=targets.event(event_id, "course"),
                                            requested_by=by)
            steps += 1
        if course_task is not None or event.moodle_course_id is not None:
            enrol_task = enqueue_once("event.enrol", {"event_id": event_id}, target=targets.event(event_id, "enrol"),
                                           requested_by=by, depends_on=[course_task] if course_task else ())
            steps += 1
    # The final marker waits on the last step of every chain: each depends on the steps before it,
    # so all of them succeeded. Depending on every step instead costs RQ a check of all N
    # dependencies at each of the 4N completions (quadratic in the event's size).
    finals = [t for t in (enrol_task or course_task,) if t is not None]
    for person in people:
        if person.role != Role.PARTICIPANT:
            continue
        chain = participant_chain(event, person, teachers, by)
        steps += len(chain)
        finals += chain[-1:]
        if enrol_task is not None and email_state(person.course_email_id) != EmailStatus.SENT:
            finals.append(enqueue_once("event.course_email", {"participant_id": person.id},
                                            target=targets.participant(event.id, person.id, "course_email"),
                                            requested_by=by, depends_on=[enrol_task]))
            steps += 1
    for person in people:  # teachers: their Guacamole login (its password made for them), told once
        if person.role == Role.TEACHER and email_state(person.access_email_id) != EmailStatus.SENT:
            target = targets.participant(event.id, person.id)
            account = enqueue_once("guac.teacher_account", {"user_id": person.user_id},
                                   target=f"{target}/login", requested_by=by)
            finals.append(enqueue_once("event.teacher_email", {"participant_id": person.id},
                                       target=f"{target}/email", requested_by=by, depends_on=[account]))
            steps += 2
    if only is None:  # the final marker: runs only when every step succeeded
        enqueue_once("event.mark_deployed", {"event_id": event_id}, target=targets.event(event_id, "deployed"),
                          requested_by=by, depends_on=finals)
        steps += 1
    return steps


def participant_chain(event: Event, person: Participant, teachers: list[int], by: str,
                       restore_access: bool = False) -> list:
    """clone → start → access → email, from the first step still missing; `restore_access` gives
    Guacamole access again even to a VM that has its connection (a resume after a break)."""
    vm = _vm_for(event, person)
    target = targets.participant(event.id, person.id)
    chain, previous = [], []
    if vm.state != VmState.READY:
        previous = [enqueue_once("vm.clone", {"vm_id": vm.id}, target=f"{target}/clone", requested_by=by)]
        chain += previous
    if vm.state != VmState.READY or vm.status != "running":
        previous = [enqueue_once("vm.start", {"vm_id": vm.id}, target=f"{target}/start", requested_by=by,
                                      depends_on=previous)]
        chain += previous
    if vm.guac_connection_id is None or chain or restore_access:
        previous = [enqueue_once("guac.provision", {"vm_id": vm.id, "teacher_ids": teachers},
                                      target=f"{target}/access", requested_by=by, depends_on=previous)]
        chain += previous
    if email_state(person.access_email_id) != EmailStatus.SENT:
        # Ahead of the bulk on `mails` (an event's course emails, all queued as its enrolment ends):
        # the access email is what lets a participant into their lab.
        chain.append(enqueue_once("event.access_email", {"participant_id": person.id},
                                  target=f"{target}/email", requested_by=by, depends_on=previous, at_front=True))
    return chain


def _vm_for(event: Event, person: Participant) -> Vm:
    """The participant's VM row, made (before any clone) when they have none or theirs is gone."""
    with session_scope() as session:
        vm = session.get(Vm, person.vm_id) if person.vm_id else None
        if vm is None or vm.state in (VmState.DELETED, VmState.MISSING):
            user = session.get(User, person.user_id)
            vm = Vm(name=dns_name(f"{slug(event.name)}-{event.id}-{user.username}"), template_id=event.template_id,
                    event_id=event.id, participant_id=person.id, user_id=person.user_id)
            session.add(vm)
            session.flush()
            session.execute(update(Participant).where(Participant.id == person.id).values(vm_id=vm.id))
        session.expunge(vm)
        return vm


def email_state(email_id: int | None) -> str | None:
    """The status of a participant's email; None when there is none yet. The daily cleanup deletes
    only sent emails (mail.cleanup), so an id whose row is gone was sent."""
    if email_id is None:
        return None
    with session_scope() as session:
        status = session.execute(select(Email.status).where(Email.id == email_id)).scalar()
    return EmailStatus.SENT if status is None else status


@one_planner
def plan_archive(event_id: int, by: str, only: list[int] | None = None) -> int:
    event = load_event(event_id)
    people = participants(event_id, ids=only)
    finals: list = []  # the last steps of each chain (see plan_deploy)
    steps = 0
    for person in people:
        planned, last = _participant_teardown(event, person, by, notify=only is None)
        steps += planned
        finals += last
    if event.moodle_course_id is not None and only is None:
        finals.append(enqueue_once("event.course_archive", {"event_id": event_id},
                                        target=targets.event(event_id, "course"), requested_by=by))
        steps += 1
    if only is None:
        enqueue_once("event.mark_archived", {"event_id": event_id}, target=targets.event(event_id, "archived"),
                          requested_by=by, depends_on=finals)
        steps += 1
    return steps


def _participant_teardown(event: Event, person: Participant, by: str, notify: bool) -> tuple[int, list]:
    """Delete the Guacamole connection → stop the VM → delete the VM; then the user's Guacamole
    account (if nothing else needs it) and, for a whole archive, the notice email.
    Returns (steps enqueued, the last ones: those nothing else waits on)."""
    target = targets.participant(event.id, person.id)
    chain: list = []
    with session_scope() as session:
        vm = session.get(Vm, person.vm_id) if person.vm_id else None
    if vm is not None and vm.state != VmState.DELETED:
        chain.append(enqueue_once("guac.cleanup_vm", {"vm_id": vm.id}, target=f"{target}/access",
                                       requested_by=by))
        if vm.state == VmState.READY:
            chain.append(enqueue_once("vm.stop", {"vm_id": vm.id}, target=f"{target}/stop", requested_by=by,
                                           depends_on=chain[-1:]))
        chain.append(enqueue_once("vm.delete", {"vm_id": vm.id}, target=f"{target}/delete", requested_by=by,
                                       depends_on=chain[-1:]))
    with session_scope() as session:  # a fresh start's replacement still being made, a VM once missing
        others = list(session.execute(select(Vm.id).where(
            Vm.participant_id == person.id, Vm.id != (person.vm_id or 0),
            Vm.state.in_((VmState.PROVISIONING, VmState.READY, VmState.MISSING)))).scalars())
    extra = [enqueue_once("vm.delete", {"vm_id": other}, target=f"{target}/delete-{other}", requested_by=by)
             for other in others]
    last = [enqueue_once("guac.cleanup_user", {"user_id": person.user_id, "event_id": event.id},
                              target=f"{target}/account", requested_by=by, depends_on=chain[-1:] + extra)]
    if notify and person.role == Role.PARTICIPANT:
        last.append(enqueue_once("event.archive_email", {"participant_id": person.id},
                                      target=f"{target}/email", requested_by=by, depends_on=chain[-1:]))
    return len(chain) + len(extra) + len(last), last


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "event"


def participants(event_id: int, ids: list[int] | None = None) -> list[Participant]:
    """The event's current people; or exactly those `ids` (a removed one included, to archive them)."""
    query = select(Participant).where(Participant.event_id == event_id).order_by(Participant.id)
    if ids is None:
        query = query.where(Participant.removed_at.is_(None))
    else:
        query = query.where(Participant.id.in_(ids))
    with session_scope() as session:
        return list(session.execute(query).scalars())
