"""Events as users see them: listed by who may see them, made and changed by their teachers and
admins, deployed, archived and retried, with participants added one by one or from CSV, and the
progress the CLI's `--wait` shows."""

from __future__ import annotations

import csv
import io

from pydantic import ValidationError
from sqlalchemy import and_, func, select

from openvle import authz, capacity, lab_events, spread
from openvle.accounts import links
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import AccountRole, Event, EventStatus, Participant, Role, Template, User, Vm, VmState
from openvle.errors import Conflict, Forbidden, Invalid, NotFound
from openvle.service import templates
from openvle.service.tasks import get_task
from openvle.service.views import (
    BatchView,
    CapacityView,
    EventDetailView,
    EventView,
    MemberChange,
    MembersAdded,
    MemberView,
    ProgressView,
    TaskRequest,
)
from openvle.specs import EventPatch, EventSpec, Member, check_break, utc

EDITABLE = (EventStatus.DRAFT, EventStatus.SCHEDULED)  # template and times change only before a deploy
UNDEPLOYED = EDITABLE  # the capacity answer matters until the VMs exist
CLOSED = (EventStatus.ARCHIVING, EventStatus.ARCHIVED)
MAX_CSV_ROWS = 5000


def _views(session, actor: Actor, rows: list[Event]) -> list[EventView]:
    ids = [e.id for e in rows]
    counts = dict(session.execute(
        select(Participant.event_id, func.count()).where(Participant.event_id.in_(ids),
                                                         Participant.role == Role.PARTICIPANT,
                                                         Participant.removed_at.is_(None))
        .group_by(Participant.event_id)).all()) if ids else {}
    names = dict(session.execute(select(Template.id, Template.name)).all()) if ids else {}
    taught = set() if actor.is_admin else authz.scope_of(session, actor).taught
    return [EventView.model_validate({
        **{k: getattr(e, k) for k in ("id", "name", "description", "status", "status_reason", "start_at", "end_at",
                                      "template_id", "moodle_course_url", "created_at", "deployed_at",
                                      "archived_at", "suspend_at", "resume_at", "suspended_at", "deploy_mode")},
        "template": names.get(e.template_id, "?"), "participants": counts.get(e.id, 0),
        "teaches": actor.is_admin or e.id in taught,
        # The reason names who failed: for the event's teachers, not for the other participants.
        "status_reason": e.status_reason if actor.is_admin or e.id in taught else None}) for e in rows]


def list_events(actor: Actor, status: str | None = None) -> list[EventView]:
    if status is not None and status not in EventStatus.ALL:
        raise Invalid(f"status {status!r} is not one of {', '.join(EventStatus.ALL)}")
    with session_scope() as session:
        query = select(Event).where(authz.events_clause(session, actor)).order_by(Event.start_at.desc(), Event.id)
        if status is not None:
            query = query.where(Event.status == status)
        return _views(session, actor, list(session.execute(query).scalars()))


def _members(session, event_id: int, only_user: int | None = None) -> list[MemberView]:
    query = (select(Participant.user_id, Participant.role, Participant.vm_id, Participant.added_at, User.username,
                    User.email, User.first_name, User.last_name)
             .join(User, User.id == Participant.user_id)
             .where(Participant.event_id == event_id, Participant.removed_at.is_(None)).order_by(Participant.id))
    if only_user is not None:
        query = query.where(Participant.user_id == only_user)
    return [MemberView.model_validate(row._asdict()) for row in session.execute(query).all()]


def get_event(actor: Actor, event_id: int, manage: str | None = None, plan: bool = True) -> EventDetailView:
    """The event with its members (all of them for its teachers, only oneself for a participant);
    with `manage`, only for those who may do that to it (Forbidden for its participants). Without
    `plan`, no deploy batches or plan: the live box asks every second and shows neither."""
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage=manage)
        view = _views(session, actor, [event])[0]
        members = _members(session, event_id, None if view.teaches else actor.user_id)
        # Only before the VMs exist, and with the count just read: the live box asks every second.
        fit = capacity.assess(session, event, view.participants) if view.teaches and event.status in UNDEPLOYED \
            else None
        planned = spread.batches(session, event_id) if plan else []
        batches = [BatchView.model_validate({**{k: getattr(b, k) for k in (
            "number", "run_at", "size", "clone_seconds", "over_capacity", "task_id")}, "state": spread.state(b)})
            for b in planned]
        described = spread.describe(session, event, planned) if plan else None
    return EventDetailView(**view.model_dump(), members=members,
                           capacity=CapacityView.model_validate(fit) if fit is not None else None,
                           deploy_batches=batches, deploy_plan=described)


def create_event(actor: Actor, spec: EventSpec) -> EventDetailView:
    authz.require_teacher(actor, "create events")
    template_id = templates.resolve(spec.template)
    teachers = [t.model_dump() for t in spec.teachers]
    if actor.user_id is not None and not actor.is_admin:  # a teacher teaches what they make
        with session_scope() as session:
            me = session.get(User, actor.user_id)
            if all(t["email"] != me.email for t in teachers):
                teachers.append({"username": me.username, "email": me.email, "first_name": me.first_name,
                                 "last_name": me.last_name})
    try:
        event_id = lab_events.create_event(spec.name, template_id, spec.utc("start"), spec.utc("end"),
                                       participants_=[p.model_dump() for p in spec.participants], teachers=teachers,
                                       description=spec.description, status=spec.status,
                                       suspend_at=spec.utc("suspend_at"), resume_at=spec.utc("resume_at"),
                                       deploy_mode=spec.deploy_mode)
    except lab_events.EventError as exc:
        raise Invalid(str(exc)) from None
    invite_members(event_id, actor)
    return get_event(actor, event_id)


def invite_members(event_id: int, actor: Actor, user_ids: list[int] | None = None) -> list[str]:
    """People in an event have accounts; those without a password get a link to choose one."""
    with session_scope() as session:
        if user_ids is None:
            user_ids = list(session.execute(select(Participant.user_id).where(
                Participant.event_id == event_id, Participant.removed_at.is_(None))).scalars())
        invited = links.invite_if_new(user_ids, actor.requested_by)
        return list(session.execute(select(User.username).where(User.id.in_(invited))).scalars()) if invited else []


def update_event(actor: Actor, event_id: int, patch: EventPatch) -> EventDetailView:
    changes = patch.model_dump(exclude_unset=True)
    template_id = templates.resolve(changes["template"]) if changes.get("template") is not None else None
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage="change")
        timing = {"template", "start", "end", "deploy_mode"} & set(changes)
        if timing and event.status not in EDITABLE:
            raise Conflict(f"event {event_id} is {event.status}: its {', '.join(sorted(timing))} can change only "
                           "while it is a draft or scheduled")
        started = [b.number for b in spread.batches(session, event_id) if b.requested_at is not None]
        if timing & {"template", "deploy_mode"} and started:
            raise Conflict(f"event {event_id}: batch {started[0]} of its spread deploy has run, so its "
                           f"{', '.join(sorted(timing & {'template', 'deploy_mode'}))} can no longer change (archive "
                           "it, or deploy the rest now)")
        if "status" in changes and event.status not in EDITABLE:
            raise Conflict(f"event {event_id} is {event.status}: only a draft or scheduled event changes between "
                           "draft and scheduled")
        for field in ("name", "status"):
            if changes.get(field) is not None:
                setattr(event, field, changes[field])
        if "description" in changes:
            event.description = changes["description"]
        start = utc(patch.start) if patch.start is not None else event.start_at
        end = utc(patch.end) if patch.end is not None else event.end_at
        if end <= start:
            raise Invalid(f"end: {end.isoformat()}Z is not after start {start.isoformat()}Z: an event ends after it "
                          "starts")
        event.start_at, event.end_at = start, end
        if changes.get("deploy_mode") is not None:
            event.deploy_mode = changes["deploy_mode"]
        if {"start", "deploy_mode"} & set(changes):
            try:
                spread.check_mode(event.deploy_mode, event.start_at)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
        if template_id is not None:
            event.template_id = template_id
        if {"suspend_at", "resume_at"} & set(changes):
            if event.status in CLOSED:
                raise Conflict(f"event {event_id} is {event.status}: it has no more breaks")
            suspend_at = utc(patch.suspend_at) if patch.suspend_at else None
            resume_at = utc(patch.resume_at) if patch.resume_at else None
            event.suspend_at = suspend_at if "suspend_at" in changes else event.suspend_at
            event.resume_at = resume_at if "resume_at" in changes else event.resume_at
            try:
                check_break(event.suspend_at, event.resume_at)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
        spread_changed = event.deploy_mode == spread.READY_BY_START or "deploy_mode" in changes
    if spread_changed:  # its batch times (and those of other spread events) move at once
        spread.replan_now()
    return get_event(actor, event_id)


def delete_event(actor: Actor, event_id: int) -> None:
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage="delete")
        if event.status != EventStatus.DRAFT:
            raise Conflict(f"event {event_id} is {event.status}: only a draft can be deleted (archive the others)")
        live = session.execute(select(func.count()).select_from(Vm).where(
            Vm.event_id == event_id, Vm.state != VmState.DELETED)).scalar_one()
        if live:
            raise Conflict(f"event {event_id} still has {live} VM(s): archive it instead")
        session.delete(event)


# --- deploy, archive, retry ---------------------------------------------------------------------------


def _asked(actor: Actor, request) -> TaskRequest:
    return TaskRequest(task=get_task(actor, request.task_id), created=request.created)


def _run(actor: Actor, event_id: int, verb: str, request) -> TaskRequest:
    with session_scope() as session:
        authz.event(session, actor, event_id, manage=verb)
    try:
        return _asked(actor, request(event_id, requested_by=actor.requested_by))
    except lab_events.EventError as exc:
        raise Conflict(str(exc)) from None


def deploy(actor: Actor, event_id: int, override_capacity: bool = False) -> TaskRequest:
    """A first deploy that does not fit the cluster is refused (409, with the numbers) unless an
    admin overrides the capacity check; the audit log records who did."""
    if override_capacity and not actor.is_admin:
        with session_scope() as session:
            authz.event(session, actor, event_id)  # an event they may not see does not exist for them
        raise Forbidden("only an admin may deploy an event that does not fit the cluster (override the capacity "
                        "check)")
    return _run(actor, event_id, "deploy", lambda event_id, requested_by: lab_events.request_deploy(
        event_id, requested_by=requested_by, override_capacity=override_capacity))


def archive(actor: Actor, event_id: int) -> TaskRequest:
    return _run(actor, event_id, "archive", lab_events.request_archive)


def suspend(actor: Actor, event_id: int) -> TaskRequest:
    """A break: every VM stopped, Guacamole access taken away; VMs, people and course kept."""
    return _run(actor, event_id, "suspend", lab_events.request_suspend)


def resume(actor: Actor, event_id: int) -> TaskRequest:
    """The break ends: every VM started, access given back with the same links and passwords."""
    return _run(actor, event_id, "resume", lab_events.request_resume)


def retry(actor: Actor, event_id: int) -> TaskRequest:
    """Re-run what failed: the deploy of an event deployed with failures, the archive that failed,
    the suspend that left VMs running, the resume that stopped half-way."""
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage="retry")
        status, reason = event.status, event.status_reason
    if status in (EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.DEPLOYING):
        return deploy(actor, event_id)
    if status in (EventStatus.FAILED, EventStatus.ARCHIVING):
        return archive(actor, event_id)
    if status == EventStatus.SUSPENDING or (status == EventStatus.SUSPENDED and reason):
        return suspend(actor, event_id)
    if status == EventStatus.RESUMING:
        return resume(actor, event_id)
    raise Conflict(f"event {event_id} is {status.replace('_', ' ')}: nothing failed, so nothing to retry "
                   "(deploy or archive start a run)")


def progress(actor: Actor, event_id: int) -> ProgressView:
    with session_scope() as session:
        authz.event(session, actor, event_id)
        teaches = authz.teaches(session, actor, event_id)
        me = session.get(User, actor.user_id).username if actor.user_id is not None else None
    shown = lab_events.progress(event_id)
    if not teaches:  # a participant sees their own steps, not who else is in the event
        shown["participants"] = {k: v for k, v in shown["participants"].items() if k == me}
        shown["reason"] = None  # it names the others who failed
    return ProgressView.model_validate(shown)


# --- participants ---------------------------------------------------------------------------------------


def list_members(actor: Actor, event_id: int) -> list[MemberView]:
    with session_scope() as session:
        authz.event(session, actor, event_id, manage="see the participants of")
        return _members(session, event_id)


def participant_names(actor: Actor, event_id: int) -> dict[int, str]:
    """Participant id -> user name, removed people included: a step's target names the participant
    by id (event:E/participant:P/stage), a page shows who it is."""
    with session_scope() as session:
        authz.event(session, actor, event_id, manage="see the participants of")
        return dict(session.execute(select(Participant.id, User.username).join(User, User.id == Participant.user_id)
                                    .where(Participant.event_id == event_id)).all())


def add_members(actor: Actor, event_id: int, people: list[Member]) -> MembersAdded:
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage="add people to")
        if event.status in CLOSED:
            raise Conflict(f"event {event_id} is {event.status}: nobody can join it any more")
    user_ids = []
    for person in people:
        try:
            role = AccountRole.TEACHER if person.role == Role.TEACHER else AccountRole.STUDENT
            user_id = lab_events.ensure_user(person.username, person.email, person.first_name, person.last_name,
                                         account_role=role)
            lab_events.add_participant(event_id, user_id, person.role, requested_by=actor.requested_by)
        except lab_events.EventError as exc:
            raise Invalid(str(exc)) from None
        user_ids.append(user_id)
    invited = invite_members(event_id, actor, user_ids)
    _replan_if_spread(event_id)
    with session_scope() as session:
        added = [m for m in _members(session, event_id) if m.user_id in set(user_ids)]
    return MembersAdded(added=added, invited=invited)


def preview_members(actor: Actor, event_id: int, people: list[Member]) -> list[MemberChange]:
    """What add_members would do with these people, changing nothing: who gets a new account, who
    is matched to an existing one (by email, then user name, as lab_events.ensure_user does), who is in
    the event already. Same permission as adding them."""
    with session_scope() as session:
        event = authz.event(session, actor, event_id, manage="add people to")
        if event.status in CLOSED:
            raise Conflict(f"event {event_id} is {event.status}: nobody can join it any more")
        deployed = event.status in (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)
        by_email = {u.email: u for u in session.execute(
            select(User).where(User.email.in_([p.email for p in people]))).scalars()}
        by_name = {u.username: u for u in session.execute(
            select(User).where(User.username.in_([p.username for p in people]))).scalars()}
        present = dict(session.execute(select(Participant.user_id, Participant.role).where(
            Participant.event_id == event_id, Participant.removed_at.is_(None))).all())
    changes = []
    for person in people:
        user = by_email.get(person.email) or by_name.get(person.username)
        gets_vm = " and gets a VM now (the event is deployed)" if deployed and person.role == Role.PARTICIPANT else ""
        if user is not None and user.id in present:
            if present[user.id] == person.role:
                change, detail = "unchanged", f"already in the event as {person.role}"
            else:
                change, detail = "role changes", f"{present[user.id]} becomes {person.role}{gets_vm}"
        elif user is not None:
            via = "email" if user.email == person.email else "user name (their email changes)"
            change = "existing account"
            detail = f"joins as {person.role}; account {user.username} (same {via}){gets_vm}"
        else:
            change, detail = "new account", f"joins as {person.role}; gets an email to choose a password{gets_vm}"
        changes.append(MemberChange(username=user.username if user is not None and user.email == person.email
                                    else person.username, email=person.email, role=person.role, change=change,
                                    detail=detail))
    return changes


CSV_FIELDS = ("username", "email", "first_name", "last_name", "role")


def parse_csv(text: str) -> list[Member]:
    """People from CSV with a header row: username,email[,first_name,last_name,role]. Every problem
    names its line, and nothing is added unless every line is right."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not {"username", "email"} <= set(header):
        raise Invalid("CSV: the first line must name the columns, at least username,email (also first_name, "
                      "last_name, role)")
    unknown = [h for h in header if h not in CSV_FIELDS]
    if unknown:
        raise Invalid(f"CSV: unknown column(s) {', '.join(unknown)}: use {', '.join(CSV_FIELDS)}")
    people, problems = [], []
    for number, row in enumerate(reader, start=2):
        if number - 1 > MAX_CSV_ROWS:
            raise Invalid(f"CSV: more than {MAX_CSV_ROWS} people: split the file")
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(values.values()):
            continue
        if None in row:
            problems.append(f"line {number}: more values than columns")
            continue
        values = {k: v for k, v in values.items() if v != "" or k in ("username", "email")}
        try:
            people.append(Member.model_validate(values))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            problems.append(f"line {number}: {where}: {first['msg'].removeprefix('Value error, ')}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise Invalid(f"CSV: {'; '.join(problems[:3])}{more}")
    if not people:
        raise Invalid("CSV: no people in it: one line per person after the header")
    return people


def remove_member(actor: Actor, event_id: int, user_id: int) -> None:
    with session_scope() as session:
        authz.event(session, actor, event_id, manage="remove people from")
        present = session.execute(select(Participant.id).where(and_(
            Participant.event_id == event_id, Participant.user_id == user_id,
            Participant.removed_at.is_(None)))).first()
    if present is None:
        raise NotFound(f"user {user_id} is not in event {event_id}")
    lab_events.remove_participant(event_id, user_id, requested_by=actor.requested_by)
    _replan_if_spread(event_id)


def _replan_if_spread(event_id: int) -> None:
    """People joined or left a spread event: its batches are sized anew."""
    with session_scope() as session:
        mode, status = session.execute(select(Event.deploy_mode, Event.status).where(Event.id == event_id)).one()
    if mode == spread.READY_BY_START and status in spread.PLANNED:
        spread.replan_now()
