"""Does an event fit the cluster? Memory of the allowed nodes against what its VMs will need.

An event's VMs live from its deploy (EVENTS_START_PREP_TIME_DAYS before its start) to its archive
(EVENTS_END_PREP_TIME_DAYS after its end). Over that window it needs participants x its template's
memory, out of:
- usable: the memory of the allowed online nodes (PVE_NODES) x CAPACITY_MEMORY_RATIO;
- minus what other events whose windows overlap need (their participants x their template's
  memory, whether deployed yet or not: they will be);
- minus what the nodes use besides our VMs (the last node sync's used memory, less our running VMs).
The answer is fits, tight (less than CAPACITY_TIGHT_PERCENT of usable memory to spare), does not
fit (short by how much), or unknown (no node sync yet, or the template's memory not yet learned).
Everything comes from the DB (node sync keeps it fresh), never from Proxmox: pages stay fast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openvle.db.models import Event, EventStatus, Node, NodeStatus, Participant, Role, Template, Vm, VmState
from openvle.settings import get_settings


class Verdict:
    FITS = "fits"
    TIGHT = "tight"
    DOES_NOT_FIT = "does not fit"
    UNKNOWN = "unknown"


# Events whose VMs exist or will: drafts are not committed to, closed ones gave their memory back.
HOLDING = (EventStatus.SCHEDULED, EventStatus.DEPLOYING, EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES,
           EventStatus.SUSPENDING, EventStatus.SUSPENDED, EventStatus.RESUMING, EventStatus.FAILED)
GIB = 1024**3


@dataclass(frozen=True)
class Fit:
    verdict: str
    participants: int
    per_vm: int  # bytes of memory one VM of the template takes
    needed: int  # participants x per_vm
    usable: int  # allowed online nodes' memory x CAPACITY_MEMORY_RATIO
    other_events: int  # what overlapping events need
    elsewhere: int  # what the nodes use besides our VMs
    spare: int  # usable - other_events - elsewhere - needed; negative: short by that much
    nodes: int
    window_start: dt.datetime
    window_end: dt.datetime
    summary: str  # one sentence with the numbers, for pages, the CLI and errors


def window(event: Event) -> tuple[dt.datetime, dt.datetime]:
    """From the event's deploy to its archive: the time its VMs hold memory."""
    settings = get_settings()
    before = (dt.timedelta(hours=settings.DEPLOY_WINDOW_HOURS) if event.deploy_mode == "ready_by_start"
              else dt.timedelta(days=settings.EVENTS_START_PREP_TIME_DAYS))
    return (event.start_at - before,
            event.end_at + dt.timedelta(days=settings.EVENTS_END_PREP_TIME_DAYS))


def _gib(value: int) -> str:
    return f"{value / GIB:.1f} GiB"


def assess(session: Session, event: Event, participants: int | None = None) -> Fit:
    """The event as it is, or with `participants` in place of its current count (what-if)."""
    settings = get_settings()
    start, end = window(event)
    if participants is None:
        participants = _participants(session, [event.id]).get(event.id, 0)
    per_vm = session.execute(select(Template.maxmem).where(Template.id == event.template_id)).scalar() or 0
    allowed = settings.pve_nodes
    nodes = session.execute(select(Node.maxmem, Node.mem).where(
        Node.status == NodeStatus.ONLINE, *([Node.name.in_(allowed)] if allowed else []))).all()
    usable = int(sum(n.maxmem for n in nodes) * settings.CAPACITY_MEMORY_RATIO)
    other_events = _overlapping_need(session, event, start, end)
    elsewhere = max(0, sum(n.mem for n in nodes) - _our_running(session, allowed))
    needed = participants * per_vm
    spare = usable - other_events - elsewhere - needed
    fit = dict(participants=participants, per_vm=per_vm, needed=needed, usable=usable, other_events=other_events,
               elsewhere=elsewhere, spare=spare, nodes=len(nodes), window_start=start, window_end=end)
    if not nodes or usable <= 0:
        where = f" among PVE_NODES ({', '.join(allowed)})" if allowed else ""
        return Fit(Verdict.UNKNOWN, **fit, summary=f"unknown: no online node{where} seen by node sync yet")
    if not per_vm and participants:
        return Fit(Verdict.UNKNOWN, **fit, summary="unknown: the template's memory is not known yet (node sync or "
                                                   "the first clone learns it)")
    numbers = (f"{participants} VM(s) x {_gib(per_vm)} = {_gib(needed)} needed; {_gib(usable)} usable on "
               f"{len(nodes)} node(s), {_gib(other_events)} for overlapping events, {_gib(elsewhere)} used by "
               f"other VMs")
    if spare < 0:
        return Fit(Verdict.DOES_NOT_FIT, **fit, summary=f"does not fit, short by {_gib(-spare)}: {numbers}")
    if spare < usable * settings.CAPACITY_TIGHT_PERCENT / 100:
        return Fit(Verdict.TIGHT, **fit, summary=f"tight, {_gib(spare)} to spare: {numbers}")
    return Fit(Verdict.FITS, **fit, summary=f"fits, {_gib(spare)} to spare: {numbers}")


def _participants(session: Session, event_ids: list[int]) -> dict[int, int]:
    if not event_ids:
        return {}
    return dict(session.execute(
        select(Participant.event_id, func.count()).where(
            Participant.event_id.in_(event_ids), Participant.role == Role.PARTICIPANT,
            Participant.removed_at.is_(None)).group_by(Participant.event_id)).all())


def _overlapping_need(session: Session, event: Event, start: dt.datetime, end: dt.datetime) -> int:
    settings = get_settings()
    before = dt.timedelta(days=settings.EVENTS_START_PREP_TIME_DAYS)
    after = dt.timedelta(days=settings.EVENTS_END_PREP_TIME_DAYS)
    others = session.execute(
        select(Event.id, Template.maxmem).join(Template, Template.id == Event.template_id).where(
            Event.id != event.id, Event.status.in_(HOLDING),
            # the other's window (its start - before, its end + after) overlaps this one
            Event.start_at < end + before, Event.end_at > start - after)).all()
    counts = _participants(session, [o.id for o in others])
    return sum(counts.get(o.id, 0) * (o.maxmem or 0) for o in others)


def _our_running(session: Session, allowed: list[str]) -> int:
    """Memory our running VMs take on the allowed nodes: already inside the nodes' used memory."""
    query = (select(func.coalesce(func.sum(Template.maxmem), 0)).select_from(Vm)
             .join(Template, Template.id == Vm.template_id)
             .where(Vm.state.in_(VmState.LIVE), Vm.status == "running",
                    Vm.node.in_(allowed) if allowed else Vm.node.is_not(None)))
    return int(session.execute(query).scalar() or 0)
