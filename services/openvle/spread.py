"""Spread deploys: an event in "ready by start" mode is deployed in batches inside the
DEPLOY_WINDOW_HOURS before its start, each batch sized to the cluster's clone capacity, in one plan
with every other such event, so labs on the same day do not fight over clone slots.

Capacity. Time is cut into batch periods of DEPLOY_BATCH_MINUTES (aligned to the epoch: every plan
agrees). In one period the cluster clones at most PVE_CLONE_CONCURRENCY at once per template and
per node (pacing.py) over the allowed online nodes, for the period's length: a budget of clone
seconds per template and for the cluster. A participant costs their template's clone time: learned
from its clones (pacing.expected_clone_seconds) or DEPLOY_CLONE_SECONDS until then.

Plan. Events by start (earlier first): each fills the periods from its window's first (or the
current one) up to the last that ends by its start; whatever has no room left goes into its last
batch, marked over capacity. Requested batches are fixed and keep holding their period's budget;
planned ones move with every re-plan (an event or its people changed, each trigger run).

Trigger (`events.deploy_batches`, every minute): spread_trigger.py requests the batches that are due.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openvle import pacing
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import DeployBatch, Event, EventStatus, Node, NodeStatus, Participant, Role, utcnow
from openvle.settings import get_settings

log = logging.getLogger("openvle.spread")

DAILY, READY_BY_START = "daily", "ready_by_start"
MODES = (DAILY, READY_BY_START)
PLANNED = (EventStatus.SCHEDULED,)  # events whose batches the plan moves (drafts commit to nothing)
KEPT = (EventStatus.SCHEDULED, EventStatus.DEPLOYING)  # a batch in flight: the others wait, unmoved


def _period() -> int:
    return get_settings().DEPLOY_BATCH_MINUTES * 60


def _index(at: dt.datetime) -> int:
    return math.floor(at.replace(tzinfo=dt.UTC).timestamp() / _period())


def _at(index: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(index * _period(), dt.UTC).replace(tzinfo=None)


def periods(start_at: dt.datetime, now: dt.datetime) -> tuple[int, int]:
    """The first and last batch period of an event's window: none before its window or the current
    period, the last one ending by its start (first > last: no room at all)."""
    window = start_at - dt.timedelta(hours=get_settings().DEPLOY_WINDOW_HOURS)
    first = max(math.ceil(window.replace(tzinfo=dt.UTC).timestamp() / _period()), _index(now))
    return first, _index(start_at) - 1


def check_mode(mode: str, start_at: dt.datetime, now: dt.datetime | None = None) -> None:
    """A "ready by start" event needs one whole batch period before its start (ValueError says so)."""
    if mode not in MODES:
        raise ValueError(f"deploy_mode: {mode!r} is not one of {', '.join(MODES)}")
    if mode != READY_BY_START:
        return
    if (start_at - (now or utcnow())).total_seconds() < _period():
        minutes = get_settings().DEPLOY_BATCH_MINUTES
        raise ValueError(f"deploy_mode: ready_by_start needs at least one whole batch period (DEPLOY_BATCH_MINUTES, "
                         f"{minutes} min) between now and the start ({start_at:%Y-%m-%d %H:%M} UTC): move the start "
                         "later, or keep deploy_mode daily and deploy it now")


def clone_seconds(template_id: int) -> int:
    learned = pacing.expected_clone_seconds(template_id)
    return max(1, round(learned)) if learned else get_settings().DEPLOY_CLONE_SECONDS


def _slots(session: Session) -> tuple[int, int]:
    """Clones at once: per template, and for the cluster (per node x allowed online nodes)."""
    settings = get_settings()
    allowed = settings.pve_nodes
    nodes = session.execute(select(func.count()).select_from(Node).where(
        Node.status == NodeStatus.ONLINE, *([Node.name.in_(allowed)] if allowed else []))).scalar() or 0
    return settings.PVE_CLONE_CONCURRENCY, settings.PVE_CLONE_CONCURRENCY * max(1, nodes)


def per_batch(session: Session, template_id: int) -> tuple[int, int, int]:
    """(clones one event's batch may hold, clone slots, seconds per clone): what the plan sizes with."""
    slots, _ = _slots(session)
    seconds = clone_seconds(template_id)
    return slots * (_period() // seconds), slots, seconds


@dataclass
class _Budget:
    """Clone seconds left per (template, period) and per cluster period."""

    template_slots: int
    cluster_slots: int
    used: dict

    def room(self, template_id: int, index: int, cost: int) -> int:
        left_t = self.template_slots * _period() - self.used.get(("t", template_id, index), 0)
        left_c = self.cluster_slots * _period() - self.used.get(("c", index), 0)
        return max(0, min(left_t, left_c)) // cost

    def take(self, template_id: int, index: int, seconds: int) -> None:
        for key in (("t", template_id, index), ("c", index)):
            self.used[key] = self.used.get(key, 0) + seconds


def replan(session: Session, now: dt.datetime) -> None:
    """Plan every scheduled "ready by start" event's batches anew (the requested ones stay)."""
    current = _index(now)
    # Planned batches of events no longer planned (deployed by hand, archived, draft, mode changed) go.
    events = list(session.execute(select(Event).where(
        Event.deploy_mode == READY_BY_START, Event.status.in_(PLANNED), Event.end_at > now)
        .order_by(Event.start_at, Event.id)).scalars())
    kept = select(Event.id).where(Event.deploy_mode == READY_BY_START, Event.status.in_(KEPT))
    session.execute(delete(DeployBatch).where(DeployBatch.requested_at.is_(None), DeployBatch.event_id.not_in(kept)))
    session.execute(delete(DeployBatch).where(DeployBatch.requested_at.is_(None),
                                              DeployBatch.event_id.in_([e.id for e in events] or [0])))
    template_slots, cluster_slots = _slots(session)
    budget = _Budget(template_slots, cluster_slots, {})
    held = session.execute(select(DeployBatch, Event.template_id).join(Event, Event.id == DeployBatch.event_id)
                           .where(DeployBatch.run_at >= _at(current))).all()
    for batch, template_id in held:  # requested, or planned for an event whose batch is in flight
        budget.take(template_id, _index(batch.run_at), batch.size * batch.clone_seconds)
    for event in events:
        _plan_event(session, event, budget, current)


def _plan_event(session: Session, event: Event, budget: _Budget, current: int) -> None:
    numbers = session.execute(select(func.max(DeployBatch.number)).where(DeployBatch.event_id == event.id)).scalar()
    waiting = session.execute(select(func.count()).select_from(Participant).where(
        Participant.event_id == event.id, Participant.role == Role.PARTICIPANT, Participant.removed_at.is_(None),
        Participant.deploy_batch.is_(None))).scalar() or 0
    cost = clone_seconds(event.template_id)
    first, last = periods(event.start_at, _at(current))
    last = max(last, current)  # its window is (nearly) over: what is left is due now
    plan: list[list] = []  # [period, size, over capacity]
    for index in range(max(first, current), last + 1):
        if waiting <= 0:
            break
        size = min(waiting, budget.room(event.template_id, index, cost))
        if size:
            plan.append([index, size, False])
            budget.take(event.template_id, index, size * cost)
            waiting -= size
    if waiting > 0:  # no room left in its window: the rest goes with its last batch
        if plan and plan[-1][0] == last:
            plan[-1][1] += waiting
            plan[-1][2] = True
        else:
            plan.append([last, waiting, True])
        budget.take(event.template_id, last, waiting * cost)
    if not plan:  # everyone is in a requested batch: the last one still makes the course and marks it deployed
        plan.append([max(first, current) if first <= last else last, 0, False])
    for offset, (index, size, over) in enumerate(plan, start=1):
        run_at = max(_at(index), event.start_at - dt.timedelta(hours=get_settings().DEPLOY_WINDOW_HOURS))
        session.add(DeployBatch(event_id=event.id, number=(numbers or 0) + offset, run_at=run_at, size=size,
                                clone_seconds=cost, over_capacity=over))
    session.flush()


def plan_lock():
    return get_redis().lock("openvle:spread:plan", timeout=300, blocking_timeout=300)


def replan_now(now: dt.datetime | None = None) -> None:
    """After an event or its people changed: its batch times (and its neighbours') are shown at once."""
    with plan_lock(), session_scope() as session:
        replan(session, now or utcnow())


def batches(session: Session, event_id: int) -> list[DeployBatch]:
    return list(session.execute(select(DeployBatch).where(DeployBatch.event_id == event_id)
                                .order_by(DeployBatch.number)).scalars())


def state(batch: DeployBatch) -> str:
    return "done" if batch.done_at else "requested" if batch.requested_at else "planned"


def batch_done(event_id: int, number: int) -> None:
    with session_scope() as session:
        session.execute(update(DeployBatch).where(DeployBatch.event_id == event_id, DeployBatch.number == number)
                        .values(done_at=utcnow()))


def members(event_id: int, number: int) -> list[int]:
    with session_scope() as session:
        return list(session.execute(select(Participant.id).where(
            Participant.event_id == event_id, Participant.deploy_batch == number,
            Participant.removed_at.is_(None))).scalars())


def describe(session: Session, event: Event, planned: list[DeployBatch]) -> str | None:
    """The plan in one sentence, with the numbers it was sized by (pages, API, CLI)."""
    if event.deploy_mode != READY_BY_START:
        return None
    hours = get_settings().DEPLOY_WINDOW_HOURS
    if not planned:
        when = "once it is scheduled" if event.status == EventStatus.DRAFT else "by the next trigger run"
        return f"deployed in batches in the {hours} h before its start; batch times are planned {when}"
    most, slots, seconds = per_batch(session, event.template_id)
    over = sum(max(1, b.size - most) for b in planned if b.over_capacity and not b.done_at)
    span = (f"1 batch at {planned[0].run_at:%Y-%m-%d %H:%M} UTC" if len(planned) == 1 else
            f"{len(planned)} batches from {planned[0].run_at:%Y-%m-%d %H:%M} to {planned[-1].run_at:%H:%M} UTC")
    text = (f"{span}, "
            f"up to {most} clone(s) per batch ({slots} clone slot(s) x {_period() // seconds} clone(s) of {seconds} s "
            f"in {get_settings().DEPLOY_BATCH_MINUTES} min)")
    if over:
        text += (f"; {over} participant(s) beyond the window's clone capacity go with its last batch: widen "
                 "DEPLOY_WINDOW_HOURS or move events apart")
    return text
