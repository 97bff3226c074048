"""Deploy and archive whole events (core_periodic), and the steps only events have.

An orchestrator job (`event.deploy` / `event.archive`) claims the event, plans the steps that are
still missing and enqueues them as Tasks chained with RQ dependencies, then checks back until every
step has settled and records the outcome. Per participant, deploy is clone → start → access, and
once per event course → enrol; each participant's access email waits only for their own access
(lab access never waits on Moodle), and their course email for the enrolment; the final marker
waits for everything. A step that fails for good cancels what depends
on it (and so the marker): the event ends "deployed with failures", naming who and why, and
"retry failed" plans again, finding most of the work already done.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError

from openvle import guacamole_passwords, spread
from openvle.connections import get_redis
from openvle.context import CheckBack, TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import (
    Email,
    Event,
    EventStatus,
    Participant,
    Role,
    Task,
    TaskStatus,
    User,
    Vm,
    utcnow,
)
from openvle.errors import PermanentError
from openvle.event_plans import load_event, participants, plan_archive, plan_deploy, slug
from openvle.jobs import courses
from openvle.jobs.mail import deliver
from openvle.mail import store_email
from openvle.settings import get_settings
from openvle.targets import Target
from openvle.wake import run_job_now

log = logging.getLogger("openvle.jobs.lab_events")

FOLLOW_EVERY = 3  # seconds between the orchestrator's looks at its steps
# A marker wakes its orchestrator as it runs; the orchestrator, finding only markers unsettled (the
# marker's success is recorded as its job ends), looks again this often for this long, not in 3 s.
MARKER_LOOK, MARKER_WAIT = 0.05, 2.0


# --- claiming -----------------------------------------------------------------------------------------


def _claim(event_id: int, task_id: int, status: str, **values: Any) -> bool:
    """Make this orchestrator the event's only active one (an atomic conditional UPDATE)."""
    # Whoever holds it must be an active Task: one that ended, or was purged since, holds nothing.
    active = select(Task.id).where(Task.status.in_(TaskStatus.ACTIVE))
    with session_scope() as session:
        claimed = session.execute(
            update(Event)
            .where(Event.id == event_id,
                   or_(Event.active_task_id.is_(None), Event.active_task_id == task_id,
                       Event.active_task_id.not_in(active)))
            .values(active_task_id=task_id, status=status, status_reason=None, **values)
            .execution_options(synchronize_session=False)
        ).rowcount
    return claimed == 1


def _release(event_id: int, task_id: int, status: str, reason: str | None, **values: Any) -> None:
    with session_scope() as session:
        session.execute(
            update(Event).where(Event.id == event_id, Event.active_task_id == task_id)
            .values(active_task_id=None, status=status, status_reason=reason, **values)
        )


# --- deploy -------------------------------------------------------------------------------------------


def deploy_event(ctx: TaskContext, event_id: int, batch: int | None = None, final: bool = True) -> dict | CheckBack:
    """The whole event; or one batch of a spread deploy (spread.py): its participants only, the event
    scheduled again after it, until its last (`final`) batch deploys whatever is still missing."""
    partial = batch is not None and not final
    if ctx.checks == 0:
        if not _claim(event_id, ctx.task_id, EventStatus.DEPLOYING):
            return {"event_id": event_id, "skipped": "another deploy or archive of this event is in flight"}
        planned = plan_deploy(event_id, by=f"task:{ctx.task_id}", only=spread.members(event_id, batch) if partial
                              else None)
        ctx.log(f"planned {planned} step(s)" + (f" for batch {batch}" if batch is not None else ""))
    outcome = _follow_patiently(ctx, event_id, "batch" if partial else "deploy")
    if batch is not None and isinstance(outcome, dict):
        spread.batch_done(event_id, batch)
    return outcome


def event_course(ctx: TaskContext, event_id: int) -> dict:
    event = load_event(event_id)
    if event.moodle_course_id is not None:
        return {"course_id": event.moodle_course_id}
    result = courses.deploy_course(ctx, template_course_id=event.template.moodle_course_id,
                                   shortname=f"{slug(event.name)}-{event.id}", fullname=event.name)
    with session_scope() as session:
        session.execute(update(Event).where(Event.id == event_id).values(
            moodle_course_id=result["course_id"], moodle_course_url=result["url"]))
    return result


def event_enrol(ctx: TaskContext, event_id: int) -> dict:
    event = load_event(event_id)
    if event.moodle_course_id is None:
        raise PermanentError(f"event {event_id} has no course yet: its course step did not succeed")
    people = participants(event_id)
    return courses.enrol(ctx, course_id=event.moodle_course_id,
                         student_ids=[p.user_id for p in people if p.role == Role.PARTICIPANT],
                         teacher_ids=[p.user_id for p in people if p.role == Role.TEACHER])


def access_email(ctx: TaskContext, participant_id: int) -> dict:
    """Render the access email from what deploy made (the link) and send it once."""

    def context(session, person: Participant, event: Event, user: User) -> dict:
        vm = session.get(Vm, person.vm_id) if person.vm_id else None
        if vm is None or not vm.access_link:
            raise PermanentError(f"{user.username} has no access link yet: their access step did not succeed")
        return {"access_link": vm.access_link, "guacamole_username": user.username,
                "guacamole_password": guacamole_passwords.PLACEHOLDER if user.guacamole_password_encrypted else None,
                "course_url": None}

    return _send_once(ctx, participant_id, "access_email_id", "event_deployed", context)


def course_email(ctx: TaskContext, participant_id: int) -> dict:
    """The course link, once the enrolment succeeded: its own email, so Moodle never holds up access."""

    def context(session, person: Participant, event: Event, user: User) -> dict:
        if not event.moodle_course_url:
            raise PermanentError(f"event {event.id} has no course: its course step did not succeed")
        return {"course_url": event.moodle_course_url}

    return _send_once(ctx, participant_id, "course_email_id", "event_course", context)


def teacher_email(ctx: TaskContext, participant_id: int) -> dict:
    """A teacher's Guacamole login (made by guac.teacher_account): they watch every VM of the event
    read-only through its sharing profiles, so they need the password made for them."""

    def context(session, person: Participant, event: Event, user: User) -> dict:
        if not user.guacamole_password_encrypted:
            raise PermanentError(f"{user.username} has no Guacamole account yet: their account step did not succeed")
        return {"guacamole_url": get_settings().GUACAMOLE_URL, "guacamole_username": user.username,
                "guacamole_password": guacamole_passwords.PLACEHOLDER}

    return _send_once(ctx, participant_id, "access_email_id", "event_teacher", context)


def _send_once(ctx: TaskContext, participant_id: int, column: str, kind: str, context) -> dict:
    """Render the participant's email `kind` once and deliver it: found again on a retry (or a later
    run) by its id kept in the participant's `column`."""
    with session_scope() as session:
        person = session.get(Participant, participant_id)
        if person is None:
            raise PermanentError(f"participant {participant_id} does not exist")
        email_id = _live_email(session, getattr(person, column))
        if email_id is None:
            event, user = session.get(Event, person.event_id), session.get(User, person.user_id)
            email_id = store_email(session, kind, user.email, {
                "user": {"full_name": user.full_name}, "event": _event_view(event),
                **context(session, person, event, user)}, event_id=event.id, user_id=user.id, task_id=ctx.task_id)
            setattr(person, column, email_id)
        user_id = person.user_id
    return deliver(ctx, email_id, fill=guacamole_passwords.filler(user_id))  # a password only as it is sent


def _live_email(session, email_id: int | None) -> int | None:
    """`email_id` if its row still exists: the cleanup deletes old sent emails, and a dead id must
    never be reused (a new email is made instead)."""
    if email_id is None:
        return None
    return email_id if session.get(Email, email_id) is not None else None


def _event_view(event: Event) -> dict:
    return {"name": event.name, "start": f"{event.start_at:%Y-%m-%d %H:%M} UTC" if event.start_at else None}


def mark_deployed(ctx: TaskContext, event_id: int) -> dict:
    """Runs only when every step of the deploy succeeded."""
    with session_scope() as session:
        session.execute(update(Event).where(Event.id == event_id).values(deployed_at=utcnow()))
    wake_orchestrator(event_id)
    return {"event_id": event_id, "deployed": True}


def wake_orchestrator(event_id: int) -> None:
    """The last step ran: the event's orchestrator looks now, not at its next look (FOLLOW_EVERY)."""
    with session_scope() as session:
        job_id = session.execute(select(Task.rq_job_id).join(Event, Event.active_task_id == Task.id)
                                 .where(Event.id == event_id)).scalar()
    run_job_now(get_redis(), job_id)


# --- archive ------------------------------------------------------------------------------------------


def archive_event(ctx: TaskContext, event_id: int) -> dict | CheckBack:
    if ctx.checks == 0:
        if not _claim(event_id, ctx.task_id, EventStatus.ARCHIVING):
            return {"event_id": event_id, "skipped": "another deploy or archive of this event is in flight"}
        planned = plan_archive(event_id, by=f"task:{ctx.task_id}")
        ctx.log(f"planned {planned} step(s)")
    return _follow_patiently(ctx, event_id, "archive")


def course_archive(ctx: TaskContext, event_id: int) -> dict:
    event = load_event(event_id)
    # Everyone who was ever in it: someone removed during the event is still enrolled (removing a
    # participant archives their VM and account, not their seat), and "keep" must unenrol them too.
    with session_scope() as session:
        everyone = list(session.execute(select(Participant.user_id).where(Participant.event_id == event_id)).scalars())
    return courses.archive_course(ctx, course_id=event.moodle_course_id, user_ids=everyone)


def archive_email(ctx: TaskContext, participant_id: int) -> dict:
    """One "event archived" email per person and event: found again by kind, event and person,
    whichever Task asks (a later archive run finds the row an earlier one made, never a second)."""
    with session_scope() as session:
        person = session.get(Participant, participant_id)
        event, user = session.get(Event, person.event_id), session.get(User, person.user_id)
        email_id = session.execute(select(Email.id).where(
            Email.kind == "event_archived", Email.event_id == event.id, Email.user_id == user.id)).scalar()
        if email_id is None:
            kept = get_settings().MOODLE_ARCHIVE_ACTION == "keep" and event.moodle_course_url is not None
            email_id = store_email(session, "event_archived", user.email, {
                "user": {"full_name": user.full_name}, "event": _event_view(event), "course_kept": kept,
                "course_url": event.moodle_course_url}, event_id=event.id, user_id=user.id, task_id=ctx.task_id)
    return deliver(ctx, email_id)


def mark_archived(ctx: TaskContext, event_id: int) -> dict:
    with session_scope() as session:
        session.execute(update(Event).where(Event.id == event_id).values(archived_at=utcnow()))
    wake_orchestrator(event_id)
    return {"event_id": event_id, "archived": True}


# --- following the steps ----------------------------------------------------------------------------


def _follow_patiently(ctx: TaskContext, event_id: int, kind: str) -> dict | CheckBack:
    """A look at the steps that cannot reach the database looks again later: following costs no
    retries, so an outage longer than core_periodic's retries never fails a deploy or archive
    whose steps go on (they have their own retries)."""
    try:
        return _follow(ctx, event_id, kind)
    except DBAPIError as exc:
        log.warning("%s of event %s: database unreachable (%s); looking again later", kind, event_id,
                    type(exc).__name__)
        return CheckBack(FOLLOW_EVERY * 3, f"{kind} of event {event_id}: database unreachable")


def _steps(task_id: int) -> list:
    with session_scope() as session:
        return session.execute(
            select(Task.id, Task.operation, Task.target, Task.status, Task.error)
            .where(Task.requested_by == f"task:{task_id}")
        ).all()


def _await_markers(steps) -> bool:
    """When only markers are unsettled, look at those alone until they are recorded (MARKER_WAIT at
    most); True when they were, and the steps are worth reading again."""
    unsettled = [s.id for s in steps if s.status not in TaskStatus.FINAL]
    if not unsettled or any(Target.parse(s.target).leaf not in MARKERS for s in steps if s.id in unsettled):
        return False
    deadline = time.monotonic() + MARKER_WAIT
    while time.monotonic() < deadline:
        time.sleep(MARKER_LOOK)
        with session_scope() as session:
            statuses = session.execute(select(Task.status).where(Task.id.in_(unsettled))).scalars().all()
        if all(status in TaskStatus.FINAL for status in statuses):
            return True
    return False


def _follow(ctx: TaskContext, event_id: int, kind: str) -> dict | CheckBack:
    steps = _steps(ctx.task_id)
    if _await_markers(steps):
        steps = _steps(ctx.task_id)
    settled = [s for s in steps if s.status in TaskStatus.FINAL]
    if len(settled) < len(steps):
        ctx.progress(len(settled) * 100 // max(len(steps), 1), f"{len(settled)} of {len(steps)} steps settled")
        return CheckBack(FOLLOW_EVERY, f"{kind} of event {event_id}: {len(settled)}/{len(steps)} steps settled")
    failures = _failures(steps)
    succeeded, failed = OUTCOMES[kind]
    status = failed if failures else succeeded
    reason = "; ".join(f"{who}: {why}" for who, why in sorted(failures.items())) or None
    if failures and kind == "suspend":  # still a break, but not everything is stopped: say so
        reason = f"not every VM was suspended: {reason}; suspend again to finish"
    _release(event_id, ctx.task_id, status, reason[:4000] if reason else None)
    if failures:
        ctx.log(f"{kind} ended with failures: {reason}", level="warning")
    return {"event_id": event_id, "status": status, "steps": len(steps), "failures": failures}


# A run's kind -> the event's status when every step succeeded, and when some failed. A suspend
# with failures is still a break (its reason names what is still running); a resume with failures
# is an event deployed with failures, which "retry failed" (a deploy) completes.
# A batch before a spread deploy's last leaves it scheduled (its failures named; the last batch retries them).
OUTCOMES = {"deploy": (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES),
            "batch": (EventStatus.SCHEDULED, EventStatus.SCHEDULED),
            "archive": (EventStatus.ARCHIVED, EventStatus.FAILED),
            "suspend": (EventStatus.SUSPENDED, EventStatus.SUSPENDED),
            "resume": (EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)}
MARKERS = ("deployed", "archived", "suspended", "resumed")  # the final steps' targets: nobody's failure


def _failures(steps) -> dict[str, str]:
    """Who failed and why: the first error of each participant (or the course), not its cancellations."""
    names = _participant_names(steps)
    failures: dict[str, str] = {}
    by_owner: dict[str, list] = defaultdict(list)
    for step in steps:
        target = Target.parse(step.target)
        pid = target.participant_id
        owner = names.get(pid, f"participant:{pid}") if pid is not None else target.leaf
        by_owner[owner].append(step)
    for owner, owned in by_owner.items():
        if owner in MARKERS:
            continue
        errors = [s for s in owned if s.status == TaskStatus.ERROR]
        if errors:
            first = min(errors, key=lambda s: s.id)
            failures[owner] = f"{Target.parse(first.target).leaf} failed: {first.error}"
        elif any(s.status == TaskStatus.CANCELLED for s in owned):
            cancelled = min((s for s in owned if s.status == TaskStatus.CANCELLED), key=lambda s: s.id)
            failures[owner] = f"{Target.parse(cancelled.target).leaf} not done: {cancelled.error}"
    return failures


def _participant_names(steps) -> dict[int, str]:
    ids = {pid for s in steps if (pid := Target.parse(s.target).participant_id) is not None}
    if not ids:
        return {}
    with session_scope() as session:
        rows = session.execute(
            select(Participant.id, User.username).join(User, User.id == Participant.user_id)
            .where(Participant.id.in_(ids))
        ).all()
    return dict(rows)

