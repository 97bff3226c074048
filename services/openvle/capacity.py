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

Disk is counted the same way on the storage the clones go to (the template's: clones are made
without a storage option): each clone needs the template's disk (full clone) or
CAPACITY_LINKED_CLONE_DISK_PERCENT of it (linked: it shares the template's base and grows with use);
usable is the storage's size x CAPACITY_DISK_RATIO (a shared storage once; a local one on the
template's node only, where its clones must be made), minus overlapping events' need on it and what
other disks use there. The verdict is the worse of memory and disk; an unknown disk (no storage
sync yet, template's disk not learned) never blocks: the verdict is memory's alone.
Everything comes from the DB (node sync keeps it fresh), never from Proxmox: pages stay fast.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openvle.db.models import (
    CloneMode,
    Event,
    EventStatus,
    Node,
    NodeStatus,
    NodeStorage,
    Participant,
    Role,
    Template,
    Vm,
    VmState,
)
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
    disk_verdict: str = "unknown"  # the disk's own verdict (the event's is the worse of memory and disk)
    storage: str | None = None  # where the clones' disks go
    disk_per_vm: int = 0  # bytes one clone needs there
    disk_needed: int = 0
    disk_usable: int = 0  # the storage's size x CAPACITY_DISK_RATIO
    disk_other_events: int = 0
    disk_elsewhere: int = 0  # what other disks use there
    disk_spare: int = 0


@dataclass(frozen=True)
class _Disk:
    verdict: str
    text: str  # the disk's part of the summary
    numbers: dict


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
    memory, text = _verdict(spare, usable, "", "", numbers)
    disk = _assess_disk(session, event, participants, start, end)
    fit |= disk.numbers
    if disk.verdict == Verdict.UNKNOWN:
        return Fit(memory, **fit, summary=f"{memory}, {text}; {disk.text}")
    if _RANK[disk.verdict] > _RANK[memory]:
        return Fit(disk.verdict, **fit, summary=f"{disk.verdict}, {disk.text}; memory {memory}, {text}")
    return Fit(memory, **fit, summary=f"{memory}, {text}; {disk.text}")


def _verdict(spare: int, usable: int, what: str, where: str, numbers: str) -> tuple[str, str]:
    """Fits, tight or does not fit, and the sentence after the verdict ("short by ...: numbers")."""
    if spare < 0:
        return Verdict.DOES_NOT_FIT, f"{what}short by {_gib(-spare)}{where}: {numbers}"
    tight = spare < usable * get_settings().CAPACITY_TIGHT_PERCENT / 100
    return (Verdict.TIGHT if tight else Verdict.FITS), f"{what}{_gib(spare)} to spare{where}: {numbers}"


_RANK = {Verdict.FITS: 0, Verdict.TIGHT: 1, Verdict.DOES_NOT_FIT: 2}


def disk_per_clone(template_maxdisk: int, clone_mode: str) -> int:
    """A full clone copies the template's disk; a linked one starts from its base and grows with use."""
    if clone_mode == CloneMode.FULL:
        return template_maxdisk
    return template_maxdisk * get_settings().CAPACITY_LINKED_CLONE_DISK_PERCENT // 100


def _assess_disk(session: Session, event: Event, participants: int, start: dt.datetime, end: dt.datetime) -> _Disk:
    settings = get_settings()
    template = session.get(Template, event.template_id)
    numbers = {"disk_verdict": Verdict.UNKNOWN, "storage": template.storage}
    if not template.storage or not template.maxdisk:
        return _Disk(Verdict.UNKNOWN, "disk unknown: the template's disk is not known yet (node sync learns it)",
                     numbers)
    rows = session.execute(select(NodeStorage).where(
        NodeStorage.storage == template.storage, NodeStorage.status == "available")).scalars().all()
    shared = [r for r in rows if r.shared][:1]  # the same storage seen from every node: once
    allowed = settings.pve_nodes
    local = [r for r in rows if not r.shared and r.node == template.node and (not allowed or r.node in allowed)]
    counted = shared or local
    if not counted or not sum(r.maxdisk for r in counted):
        return _Disk(Verdict.UNKNOWN, f"disk unknown: storage {template.storage} of node {template.node} not seen "
                                      "by node sync yet", numbers)
    per_vm = disk_per_clone(template.maxdisk, template.clone_mode)
    needed = participants * per_vm
    usable = int(sum(r.maxdisk for r in counted) * settings.CAPACITY_DISK_RATIO)
    on_it = [Template.storage == template.storage, *([] if shared else [Template.node == template.node])]
    other_events = sum(count * disk_per_clone(maxdisk, mode) for count, maxdisk, mode in
                       _overlapping(session, event, start, end, Template.maxdisk, Template.clone_mode, where=on_it))
    ours = session.execute(
        select(func.count(), Template.maxdisk, Template.clone_mode).select_from(Vm)
        .join(Template, Template.id == Vm.template_id)
        .where(Vm.state.in_(VmState.LIVE), *on_it).group_by(Template.id, Template.maxdisk, Template.clone_mode)).all()
    elsewhere = max(0, sum(r.disk for r in counted) - sum(n * disk_per_clone(d, m) for n, d, m in ours))
    spare = usable - other_events - elsewhere - needed
    numbers |= dict(disk_per_vm=per_vm, disk_needed=needed, disk_usable=usable, disk_other_events=other_events,
                    disk_elsewhere=elsewhere, disk_spare=spare)
    clone = ("full clone" if template.clone_mode == CloneMode.FULL
             else f"linked clone, {settings.CAPACITY_LINKED_CLONE_DISK_PERCENT}% of {_gib(template.maxdisk)}")
    shown = (f"{participants} VM(s) x {_gib(per_vm)} ({clone}) = {_gib(needed)} needed; {_gib(usable)} usable, "
             f"{_gib(other_events)} for overlapping events, {_gib(elsewhere)} used by other disks")
    verdict, text = _verdict(spare, usable, "disk ", f" on {template.storage}", shown)
    numbers["disk_verdict"] = verdict
    return _Disk(verdict, text, numbers)


def _participants(session: Session, event_ids: list[int]) -> dict[int, int]:
    if not event_ids:
        return {}
    return dict(session.execute(
        select(Participant.event_id, func.count()).where(
            Participant.event_id.in_(event_ids), Participant.role == Role.PARTICIPANT,
            Participant.removed_at.is_(None)).group_by(Participant.event_id)).all())


def _overlapping_need(session: Session, event: Event, start: dt.datetime, end: dt.datetime) -> int:
    return sum(count * (maxmem or 0) for count, maxmem in _overlapping(session, event, start, end, Template.maxmem))


def _overlapping(session: Session, event: Event, start: dt.datetime, end: dt.datetime, *columns,
                 where: list = ()) -> list[tuple]:
    """(participants, *columns of its template) of each other holding event whose window overlaps."""
    settings = get_settings()
    before = dt.timedelta(days=settings.EVENTS_START_PREP_TIME_DAYS)
    after = dt.timedelta(days=settings.EVENTS_END_PREP_TIME_DAYS)
    others = session.execute(
        select(Event.id, *columns).join(Template, Template.id == Event.template_id).where(
            Event.id != event.id, Event.status.in_(HOLDING), *where,
            # the other's window (its start - before, its end + after) overlaps this one
            Event.start_at < end + before, Event.end_at > start - after)).all()
    counts = _participants(session, [o[0] for o in others])
    return [(counts.get(o[0], 0), *o[1:]) for o in others]


def _our_running(session: Session, allowed: list[str]) -> int:
    """Memory our running VMs take on the allowed nodes: already inside the nodes' used memory."""
    query = (select(func.coalesce(func.sum(Template.maxmem), 0)).select_from(Vm)
             .join(Template, Template.id == Vm.template_id)
             .where(Vm.state.in_(VmState.LIVE), Vm.status == "running",
                    Vm.node.in_(allowed) if allowed else Vm.node.is_not(None)))
    return int(session.execute(query).scalar() or 0)
