"""The daily event lifecycle (core_periodic, 01:00 UTC): deploy what starts soon, archive what
ended a while ago, suspend and resume events on their breaks, send each participant one "your lab
starts in N days" notice, and tell teachers and admins once when a scheduled event stops fitting
the cluster (capacity.py; such an event is not deployed until it fits or an admin overrides).

Running it twice the same day changes nothing: deploy and archive requests are deduplicated per
event (lab_events.py), and a notice is claimed on its participant row before its email is queued.
"""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import or_, select, update

from openvle import alerts, capacity, spread, spread_trigger
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Event, EventStatus, Participant, Role, User, Vm, utcnow
from openvle.lab_events import (
    EventError,
    release_stuck,
    request_archive,
    request_deploy,
    request_resume,
    request_suspend,
)
from openvle.mail import queue_email
from openvle.settings import get_settings


def lifecycle(ctx: TaskContext, now: str | None = None) -> dict:
    """`now` (ISO, UTC) only for tests and what-if runs; the scheduler leaves it out."""
    settings = get_settings()
    now_at = dt.datetime.fromisoformat(now.rstrip("Z")) if now else utcnow()
    deploy_until = now_at + dt.timedelta(days=settings.EVENTS_START_PREP_TIME_DAYS)
    archive_before = now_at - dt.timedelta(days=settings.EVENTS_END_PREP_TIME_DAYS)
    release_stuck()  # a deploy or archive that died leaves its event failed: archived below when it ended
    with session_scope() as session:
        to_deploy = list(session.execute(select(Event.id).where(
            Event.status == EventStatus.SCHEDULED, Event.start_at <= deploy_until, Event.end_at > now_at,
            Event.deploy_mode == spread.DAILY)).scalars())  # the others: in batches (spread.py)
        to_archive = list(session.execute(select(Event.id).where(
            Event.status.in_((EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.FAILED,
                              EventStatus.SUSPENDED)),
            Event.end_at < archive_before)).scalars())
        # A break that began and was not yet suspended for (suspended_at is when the latest suspend
        # was asked): an event someone resumed by hand during its break stays resumed.
        to_suspend = list(session.execute(select(Event.id).where(
            Event.status.in_((EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)), Event.suspend_at <= now_at,
            or_(Event.resume_at.is_(None), Event.resume_at > now_at), Event.end_at > now_at,
            or_(Event.suspended_at.is_(None), Event.suspended_at < Event.suspend_at))).scalars())
        # A break that ended, for an event suspended before its end (one suspended by hand after it stays so).
        to_resume = list(session.execute(select(Event.id).where(
            Event.status == EventStatus.SUSPENDED, Event.resume_at <= now_at, Event.end_at > now_at,
            or_(Event.suspended_at.is_(None), Event.suspended_at < Event.resume_at))).scalars())
    short = _check_capacity(now_at)
    deployed, archived = _request_all(to_deploy, request_deploy), _request_all(to_archive, request_archive)
    suspended = _request_all(to_suspend, lambda event_id, requested_by: request_suspend(
        event_id, requested_by=requested_by, at=now_at))
    resumed = _request_all(to_resume, request_resume)
    notices = _send_notices(now_at, settings.EVENTS_NOTICE_DAYS)
    if deployed or archived or suspended or resumed or notices or short:
        ctx.log(f"deploy requested for {deployed}, archive for {archived}, suspend for {suspended}, resume for "
                f"{resumed}, {len(notices)} notice(s), does not fit (told): {short}")
    return {"now": now_at.isoformat() + "Z", "deploy": deployed, "archive": archived, "suspend": suspended,
            "resume": resumed, "notices": notices, "does_not_fit": short}


def deploy_batches(ctx: TaskContext, now: str | None = None) -> dict:
    """Every minute: request the spread deploys' batches that are due (spread_trigger.py). A run that was
    missed is made up by the next one: a batch is due from its time on until it is requested."""
    now_at = dt.datetime.fromisoformat(now.rstrip("Z")) if now else utcnow()
    asked = spread_trigger.request_due(now_at)
    if asked:
        ctx.log("requested " + ", ".join(f"batch {a['batch']} of event {a['event_id']} (task {a['task_id']})"
                                         for a in asked))
    return {"now": now_at.isoformat() + "Z", "requested": asked}


def _check_capacity(now_at: dt.datetime) -> list[int]:
    """Scheduled events not over yet that do not fit: their teachers and the admins are told once
    (capacity_alerted_at); one that fits again is forgotten, so a later shortage is told again."""
    told = []
    with session_scope() as session:
        scheduled = list(session.execute(select(Event).where(
            Event.status == EventStatus.SCHEDULED, Event.end_at > now_at)).scalars())
        for event in scheduled:
            fit = capacity.assess(session, event)
            short = fit.verdict == capacity.Verdict.DOES_NOT_FIT
            if not short:
                event.capacity_alerted_at = None
            elif event.capacity_alerted_at is None:
                teachers = list(session.execute(
                    select(User.email).join(Participant, Participant.user_id == User.id).where(
                        Participant.event_id == event.id, Participant.role == Role.TEACHER,
                        Participant.removed_at.is_(None))).scalars())
                alerts.event_does_not_fit(event.id, event.name, f"{event.start_at:%Y-%m-%d %H:%M} UTC", teachers, fit)
                event.capacity_alerted_at = utcnow()
                told.append(event.id)
    return told


def _request_all(event_ids: list[int], request) -> list[int]:
    asked = []
    for event_id in event_ids:
        try:
            request(event_id, requested_by="lifecycle")
            asked.append(event_id)
        except EventError:  # its state changed since we looked: nothing to do
            continue
    return asked


def _send_notices(now_at: dt.datetime, days: int) -> list[int]:
    """One notice per participant of a deployed event starting within `days` days."""
    with session_scope() as session:
        due = session.execute(
            select(Participant.id, Event.id, Event.name, Event.start_at, User.id, User.email, User.first_name,
                   User.last_name, Vm.access_link, Event.moodle_course_url)
            .join(Event, Event.id == Participant.event_id).join(User, User.id == Participant.user_id)
            .outerjoin(Vm, Vm.id == Participant.vm_id)
            .where(Event.status.in_((EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES)),
                   Event.start_at > now_at, Event.start_at <= now_at + dt.timedelta(days=days),
                   Participant.role == Role.PARTICIPANT, Participant.notice_sent_at.is_(None),
                   Participant.removed_at.is_(None))
        ).all()
    sent = []
    for pid, event_id, name, start_at, user_id, email, first, last, link, course_url in due:
        with session_scope() as session:  # claim first: a second run finds it claimed
            claimed = session.execute(update(Participant).where(
                Participant.id == pid, Participant.notice_sent_at.is_(None)).values(notice_sent_at=utcnow())).rowcount
        if not claimed:
            continue
        left = max(1, math.ceil((start_at - now_at).total_seconds() / 86400))
        queue_email("event_starts_soon", email, {
            "user": {"full_name": f"{first} {last}".strip()}, "days": left, "access_link": link,
            "course_url": course_url, "event": {"name": name, "start": f"{start_at:%Y-%m-%d %H:%M} UTC"},
        }, user_id=user_id, event_id=event_id, requested_by="lifecycle")
        sent.append(pid)
    return sent
