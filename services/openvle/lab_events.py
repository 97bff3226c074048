"""Events: what teachers and admins ask for (deploy, archive, retry), guarded so an event never has
two deploys or two archives in flight, whoever triggers them (scheduler, a teacher, a double click).

A request is enqueued at most once per event and operation (enqueue.one_active: the event's short
Redis lock serialises the "is one already active?" check with the enqueue), and the orchestrator
job itself claims the event in the DB (a conditional UPDATE) before it acts, so even a duplicate
that slipped through does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update

from openvle import alerts, capacity, targets
from openvle.db.engine import session_scope
from openvle.db.models import (
    AccountRole,
    CloneMode,
    Event,
    EventStatus,
    Participant,
    Role,
    Task,
    TaskStatus,
    Template,
    User,
    utcnow,
)
from openvle.enqueue import enqueue_operation, one_active
from openvle.event_plans import plan_archive, plan_deploy
from openvle.targets import Target

log = logging.getLogger("openvle.lab_events")

DEPLOYABLE = (EventStatus.DRAFT, EventStatus.SCHEDULED, EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.FAILED,
              EventStatus.DEPLOYING)
ARCHIVABLE = (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.FAILED, EventStatus.ARCHIVING,
              EventStatus.SCHEDULED, EventStatus.DRAFT, EventStatus.SUSPENDED)
SUSPENDABLE = (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.SUSPENDING)
RESUMABLE = (EventStatus.SUSPENDED, EventStatus.RESUMING)
# The orchestrator that holds an event in each passing state (for the reason a stuck one is given).
IN_FLIGHT = {EventStatus.DEPLOYING: "deploy", EventStatus.ARCHIVING: "archive", EventStatus.SUSPENDING: "suspend",
             EventStatus.RESUMING: "resume"}


class EventError(ValueError):
    """A request that cannot be honoured as asked (unknown event, wrong state): say why."""


class DoesNotFit(EventError):
    """A first deploy the cluster's memory cannot hold (capacity.py); an admin may override."""

    def __init__(self, message: str, fit: capacity.Fit):
        super().__init__(message)
        self.fit = fit


@dataclass(frozen=True)
class Request:
    task_id: int
    created: bool  # False: an identical request was already in flight, this is it


def _request(event_id: int, operation: str, allowed: tuple[str, ...], requested_by: str,
             refusal: str = "cannot {verb} it now", args: dict | None = None) -> Request:
    with session_scope() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise EventError(f"event {event_id} does not exist")
        status = event.status
    with one_active(operation, target=targets.event(event_id)) as running:
        if running is not None:
            return Request(running.id, created=False)
        if status not in allowed:
            verb = operation.split('.')[1]
            raise EventError(f"event {event_id} is {status.replace('_', ' ')}: {refusal.format(verb=verb)}")
        task = enqueue_operation(operation, {"event_id": event_id, **(args or {})}, target=targets.event(event_id),
                                 requested_by=requested_by)
    log.info("%s of event %s requested by %s: task %s", operation, event_id, requested_by, task.id)
    return Request(task.id, created=True)


def request_deploy(event_id: int, requested_by: str = "cli", override_capacity: bool = False,
                   check_capacity: bool = True, batch: int | None = None, final: bool = True) -> Request:
    """Deploy the event, or re-run what is missing after failures ("retry failed"). A first deploy
    that does not fit the cluster is refused (DoesNotFit) unless `override_capacity` (admins).
    `batch` (spread.py): deploy only that batch's participants, or with `final` all still missing;
    a later batch is no first deploy (`check_capacity` off: the event was committed to)."""
    fit = check_fits(event_id) if check_capacity else None
    if fit is not None and not override_capacity:
        raise DoesNotFit(f"event {event_id} does not fit the cluster: {fit.summary}. Remove participants, move it "
                         "to when fewer events run, add nodes (PVE_NODES), or have an admin deploy it anyway "
                         "(override the capacity check)", fit)
    args = {"batch": batch, "final": final} if batch is not None else None
    asked = _request(event_id, "event.deploy", DEPLOYABLE, requested_by, args=args)
    if fit is not None and asked.created:
        log.warning("event %s deployed by %s although it does not fit: %s", event_id, requested_by, fit.summary)
    return asked


def check_fits(event_id: int) -> capacity.Fit | None:
    """The capacity answer of an event not deployed yet that does not fit; None otherwise."""
    with session_scope() as session:
        event = session.get(Event, event_id)
        if event is None or event.status not in (EventStatus.DRAFT, EventStatus.SCHEDULED):
            return None
        fit = capacity.assess(session, event)
    return fit if fit.verdict == capacity.Verdict.DOES_NOT_FIT else None


def request_archive(event_id: int, requested_by: str = "cli") -> Request:
    return _request(event_id, "event.archive", ARCHIVABLE, requested_by)


def request_suspend(event_id: int, requested_by: str = "cli", at: dt.datetime | None = None) -> Request:
    """A break: take Guacamole access away and stop every VM (VMs, people and course are kept). A
    suspended event whose suspend left failures (status_reason) may be suspended again. The event
    remembers when (`at`, the lifecycle's clock), so the lifecycle suspends it once per break."""
    with session_scope() as session:
        event = session.get(Event, event_id)
        unfinished = event is not None and event.status == EventStatus.SUSPENDED and event.status_reason
    allowed = SUSPENDABLE + ((EventStatus.SUSPENDED,) if unfinished else ())
    asked = _request(event_id, "event.suspend", allowed, requested_by,
                     "only a deployed event can be suspended (one suspended already is brought back with resume)")
    if asked.created:
        with session_scope() as session:
            session.execute(update(Event).where(Event.id == event_id).values(suspended_at=at or utcnow()))
    return asked


def request_resume(event_id: int, requested_by: str = "cli") -> Request:
    """The break ends: start every VM and give access back (the same links and passwords)."""
    return _request(event_id, "event.resume", RESUMABLE, requested_by,
                    "only a suspended event can be resumed")


def release_stuck() -> list[int]:
    """Events in deploying/archiving/suspending/resuming whose orchestrator is no longer active (failed for good,
    cancelled, or purged after TASK_RETENTION_DAYS) are set to failed, saying why, and the admins
    are told: a failed event can be deployed again or archived, and the lifecycle archives it."""
    active = select(Task.id).where(Task.status.in_(TaskStatus.ACTIVE))
    with session_scope() as session:
        stuck = session.execute(
            select(Event.id, Event.name, Event.status, Event.active_task_id).where(
                Event.status.in_(tuple(IN_FLIGHT)),
                or_(Event.active_task_id.is_(None), Event.active_task_id.not_in(active)))
        ).all()
    released = []
    for event_id, name, status, task_id in stuck:
        with session_scope() as session:
            task = session.get(Task, task_id) if task_id else None
            what = IN_FLIGHT[status]
            if task is None:
                ended = f"its {what} Task {task_id or '(none)'} is gone"
            else:
                ended = f"its {what} (task {task.id}) ended {task.status}: {task.error or 'no error recorded'}"
            reason = f"stuck in {status}: {ended}; deploy or archive it again"[:4000]
            moved = session.execute(
                update(Event).where(Event.id == event_id, Event.status == status,
                                    Event.active_task_id.is_(task_id) if task_id is None
                                    else Event.active_task_id == task_id)
                .values(status=EventStatus.FAILED, status_reason=reason, active_task_id=None)
            ).rowcount
        if moved:
            log.error("event %s (%s) was %s", event_id, name, reason)
            alerts.event_stuck(event_id, name, reason)
            released.append(event_id)
    return released


# --- making templates, people and events (the CLI and tests use these) ----------------------------


def create_template(name: str, pve_vmid: int, node: str, clone_mode: str = "linked", protocol: str = "rdp",
                    port: int | None = None, moodle_course_id: int | None = None) -> int:
    if clone_mode not in (CloneMode.LINKED, CloneMode.FULL):
        raise EventError(f"template {name}: clone_mode must be linked or full, not {clone_mode!r}")
    if protocol not in DEFAULT_PORTS:
        raise EventError(f"template {name}: protocol must be one of {', '.join(DEFAULT_PORTS)}, not {protocol!r}")
    with session_scope() as session:
        template = session.execute(select(Template).where(Template.name == name)).scalar_one_or_none() \
            or Template(name=name)
        template.pve_vmid, template.node, template.clone_mode = pve_vmid, node, clone_mode
        template.protocol, template.port = protocol, port or DEFAULT_PORTS[protocol]
        template.moodle_course_id = moodle_course_id
        session.add(template)
        session.flush()
        return template.id


def ensure_user(username: str, email: str, first_name: str = "", last_name: str = "",
                account_role: str = AccountRole.STUDENT) -> int:
    """The account of a person named in an event, matched by email (then by user name), made when
    missing. A teacher named in an event is at least a teacher account; nobody is demoted."""
    username = username.strip().lower()
    if not re.fullmatch(r"[a-z0-9._@-]{1,100}", username):
        raise EventError(f"user name {username!r}: use lower-case letters, digits and . _ @ -")
    if "@" not in email:
        raise EventError(f"user {username}: {email!r} is not an email address")
    with session_scope() as session:
        user = session.execute(select(User).where(User.email == email)).scalar_one_or_none() \
            or session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            user = User(username=username, email=email, first_name=first_name or username, last_name=last_name,
                        role=account_role, active=True)
            session.add(user)
        elif user.email == email:
            # The same person: their account keeps its name (Guacamole and Moodle know them by it).
            user.first_name, user.last_name = first_name or user.first_name, last_name or user.last_name
        else:  # the same user name with a new email (nobody else has that email: looked up first)
            user.email, user.first_name, user.last_name = email, first_name or user.first_name, last_name
        if AccountRole.RANK[account_role] > AccountRole.RANK.get(user.role, 0):
            user.role = account_role
        session.flush()
        return user.id


def create_event(name: str, template: str | int, start_at: dt.datetime, end_at: dt.datetime,
                 participants_: list[dict] = (), teachers: list[dict] = (), description: str | None = None,
                 status: str = EventStatus.SCHEDULED, suspend_at: dt.datetime | None = None,
                 resume_at: dt.datetime | None = None, deploy_mode: str = "daily") -> int:
    from openvle import spread

    if end_at <= start_at:
        raise EventError(f"event {name}: its end ({end_at}) must come after its start ({start_at})")
    if status not in (EventStatus.DRAFT, EventStatus.SCHEDULED):
        raise EventError(f"event {name}: a new event is draft or scheduled, not {status!r}")
    if status == EventStatus.SCHEDULED and end_at <= utcnow():
        raise EventError(f"event {name}: its end ({end_at:%Y-%m-%d %H:%M} UTC) is already past, so there is nothing "
                         "to deploy: move the dates, or create it with status draft to keep it as a record")
    try:
        spread.check_mode(deploy_mode, start_at)
    except ValueError as exc:
        raise EventError(f"event {name}: {exc}") from None
    _check_people_once(participants_, teachers)
    with session_scope() as session:
        column = Template.id if isinstance(template, int) else Template.name
        found = session.execute(select(Template.id, Template.moodle_course_id).where(column == template)).first()
    if found is None:
        raise EventError(f"event {name}: template {template!r} does not exist (create it first)")
    template_id = found.id
    if found.moodle_course_id:  # everyone is enrolled in the event's Moodle course
        _check_names(participants_, teachers)
    people = [(ensure_user(**p), Role.PARTICIPANT) for p in participants_]
    people += [(ensure_user(**t, account_role=AccountRole.TEACHER), Role.TEACHER) for t in teachers]
    with session_scope() as session:
        event = Event(name=name, description=description, start_at=start_at, end_at=end_at,
                      template_id=template_id, status=status, suspend_at=suspend_at, resume_at=resume_at,
                      deploy_mode=deploy_mode)
        session.add(event)
        session.flush()
        session.add_all(Participant(event_id=event.id, user_id=uid, role=role) for uid, role in dict(people).items())
        event_id = event.id
    if deploy_mode == spread.READY_BY_START:
        spread.replan_now()
    return event_id


def _check_people_once(participants_: list[dict], teachers: list[dict]) -> None:
    """Each person once per event (as participant or teacher), by user name and by email."""
    seen: dict[tuple[str, str], str] = {}
    for group, people in (("participants", participants_), ("teachers", teachers)):
        for index, person in enumerate(people, start=1):
            here = f"{group}[{index}]"
            for field in ("username", "email"):
                key = (field, str(person.get(field, "")).strip().lower())
                if key in seen:
                    raise EventError(f"{here}.{field}: {key[1]!r} is already {seen[key]}: list each person once")
                seen[key] = here


def _check_names(participants_: list[dict], teachers: list[dict]) -> None:
    """Moodle refuses an account without a first and a last name ("The field lastname cannot be
    blank"), but only at enrolment, long after the event was made: say so now. A name left out is
    taken from the person's account when ensure_user will match one that has it."""
    with session_scope() as session:
        for group, people in (("participants", participants_), ("teachers", teachers)):
            for index, person in enumerate(people, start=1):
                username, email = str(person.get("username", "")).strip().lower(), person.get("email")
                by_email = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
                by_name = None if by_email else session.execute(
                    select(User).where(User.username == username)).scalar_one_or_none()
                kept = {"first_name": (by_email or by_name).first_name if (by_email or by_name) else "",
                        "last_name": by_email.last_name if by_email else ""}  # as ensure_user keeps them
                for field in ("first_name", "last_name"):
                    if not (str(person.get(field) or "").strip() or (kept[field] or "").strip()):
                        raise EventError(
                            f"{group}[{index}] ({username}): {field} is missing: the event's Moodle course "
                            f"enrols nobody without a first and a last name; give {username} both")


def add_participant(event_id: int, user_id: int, role: str = Role.PARTICIPANT, requested_by: str | None = None) -> int:
    """Add someone; in a deployed event, provision just them (the steps name `requested_by`)."""
    with session_scope() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise EventError(f"event {event_id} does not exist")
        person = session.execute(select(Participant).where(
            Participant.event_id == event_id, Participant.user_id == user_id)).scalar_one_or_none()
        if person is None:
            person = Participant(event_id=event_id, user_id=user_id, role=role)
            session.add(person)
        person.removed_at, person.role = None, role
        session.flush()
        pid, deployed = person.id, event.status in (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)
    if deployed and role == Role.PARTICIPANT:
        plan_deploy(event_id, by=requested_by or f"participant:{pid}", only=[pid])
    return pid


def remove_participant(event_id: int, user_id: int, requested_by: str | None = None) -> int:
    """Remove someone; in a deployed event, archive just them (access, VM, account)."""
    with session_scope() as session:
        person = session.execute(select(Participant).where(
            Participant.event_id == event_id, Participant.user_id == user_id,
            Participant.removed_at.is_(None))).scalar_one_or_none()
        if person is None:
            raise EventError(f"user {user_id} is not in event {event_id}")
        person.removed_at = utcnow()
        pid, has_vm = person.id, person.vm_id is not None
        status = session.get(Event, event_id).status
    # A scheduled event may have VMs already: an earlier batch of a spread deploy (spread.py).
    if status not in (EventStatus.DRAFT, EventStatus.SCHEDULED, EventStatus.ARCHIVED) or has_vm:
        plan_archive(event_id, by=requested_by or f"participant:{pid}", only=[pid])
    return pid


# --- progress ---------------------------------------------------------------------------------------

STAGES = ("clone", "start", "access", "course", "enrol", "email", "course_email")


def progress(event_id: int) -> dict:
    """Per participant and stage the state of its latest step (queued, running, done, failed,
    cancelled), and one percentage for the event's latest deploy or archive."""
    with session_scope() as session:
        event = session.get(Event, event_id)
        if event is None:
            raise EventError(f"event {event_id} does not exist")
        latest_run = session.execute(
            select(Task.id, Task.operation, Task.status).where(
                Task.target == targets.event(event_id), Task.operation.in_(RUNS))
            .order_by(Task.id.desc()).limit(1)
        ).first()
        rows = session.execute(
            # event_id first: its index finds the event's steps (enqueue sets it from the target)
            select(Task.id, Task.target, Task.status).where(Task.event_id == event_id,
                                                           Task.target.like(targets.below(targets.event(event_id))),
                                                           # a VM someone clicked is no stage of a deploy or archive
                                                           Task.target.not_like(targets.event(event_id, "vm:%")))
        ).all()
        names = dict(session.execute(
            select(Participant.id, User.username).join(User, User.id == Participant.user_id)
            .where(Participant.event_id == event_id)).all())
        summary = {"event_id": event_id, "name": event.name, "status": event.status,
                   "reason": event.status_reason}
    latest: dict[str, tuple] = {}
    for row in rows:
        if row.target not in latest or row.id > latest[row.target][0]:
            latest[row.target] = (row.id, row.status)
    people: dict[str, dict[str, str]] = {}
    stages: dict[str, dict[str, int]] = {}
    for target, (_, status) in latest.items():
        parsed = Target.parse(target)
        stage, pid = parsed.leaf, parsed.participant_id
        owner = names.get(pid, f"participant:{pid}") if pid is not None else "event"
        state = STATE_WORDS.get(status, status)
        people.setdefault(owner, {})[stage] = state
        stages.setdefault(stage, {}).setdefault(state, 0)
        stages[stage][state] += 1
    run_steps: dict[str, int] = {}
    if latest_run is not None:
        with session_scope() as session:  # counted by the database: a big run's steps are many rows
            run_steps = dict(session.execute(select(Task.status, func.count()).where(
                Task.requested_by == f"task:{latest_run.id}").group_by(Task.status)).all())
    steps = sum(run_steps.values())
    settled = sum(n for s, n in run_steps.items() if s in TaskStatus.FINAL)
    summary.update(
        operation=latest_run.operation if latest_run else None,
        percent=settled * 100 // steps if steps else 0,
        steps=steps, settled=settled, stages=stages, participants=people,
        in_flight=latest_run is not None and latest_run.status in TaskStatus.ACTIVE,
    )
    return summary


RUNS = ("event.deploy", "event.archive", "event.suspend", "event.resume")  # the runs progress follows
STATE_WORDS = {TaskStatus.QUEUED: "queued", TaskStatus.PROCESSING: "running", TaskStatus.SUCCESS: "done",
               TaskStatus.ERROR: "failed", TaskStatus.CANCELLED: "cancelled"}
DEFAULT_PORTS = {"rdp": 3389, "vnc": 5900, "ssh": 22}
