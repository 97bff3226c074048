"""The spread deploys' trigger (`events.deploy_batches`, every minute): re-plan (spread.py), then
request each event's earliest due batch, unless a deploy of the event is in flight (the next run
comes back to it). A batch is claimed by a conditional UPDATE before its request, so two runs never
request it twice, and a request that fails gives it back. A batch takes `size` participants not in a
batch yet; the last one deploys whatever is still missing (people added late, earlier batches'
failures) and the event is deployed.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select, update

from openvle import targets
from openvle.db.engine import session_scope
from openvle.db.models import DeployBatch, Event, EventStatus, Participant, Role
from openvle.enqueue import active_task
from openvle.lab_events import EventError, request_deploy
from openvle.spread import READY_BY_START, plan_lock, replan

log = logging.getLogger("openvle.spread")


def request_due(now: dt.datetime) -> list[dict]:
    """Request each scheduled spread event's earliest due batch (run_at <= now), once."""
    asked = []
    with plan_lock():
        with session_scope() as session:
            replan(session, now)
        with session_scope() as session:
            due = session.execute(select(DeployBatch.id, DeployBatch.event_id, DeployBatch.number, DeployBatch.size)
                                  .join(Event, Event.id == DeployBatch.event_id)
                                  .where(Event.deploy_mode == READY_BY_START, Event.status == EventStatus.SCHEDULED,
                                         DeployBatch.requested_at.is_(None), DeployBatch.run_at <= now)
                                  .order_by(DeployBatch.event_id, DeployBatch.number)).all()
        seen = set()
        for batch_id, event_id, number, size in due:
            if event_id in seen or active_task("event.deploy", target=targets.event(event_id)) is not None:
                continue  # one batch of an event at a time; the next run comes back to it
            seen.add(event_id)
            final = _claim(batch_id, event_id, number, size, now)
            if final is None:
                continue
            try:
                request = request_deploy(event_id, requested_by="spread", check_capacity=number == _first(event_id),
                                         batch=number, final=final)
            except EventError as exc:  # refused (does not fit, its state changed): given back, asked again later
                _give_back(batch_id, event_id, number)
                log.warning("batch %s of event %s not requested: %s", number, event_id, exc)
                continue
            except Exception:
                _give_back(batch_id, event_id, number)
                raise
            with session_scope() as session:
                session.execute(update(DeployBatch).where(DeployBatch.id == batch_id).values(task_id=request.task_id))
            log.info("batch %s of event %s requested: task %s%s", number, event_id, request.task_id,
                     " (its last)" if final else "")
            asked.append({"event_id": event_id, "batch": number, "task_id": request.task_id, "final": final})
    return asked


def _first(event_id: int) -> int:
    with session_scope() as session:
        return session.execute(select(func.min(DeployBatch.number)).where(DeployBatch.event_id == event_id)).scalar()


def _claim(batch_id: int, event_id: int, number: int, size: int, now: dt.datetime) -> bool | None:
    """Mark the batch requested and give it its participants; None if another run has it. Returns
    whether it is the event's last batch (it then deploys everyone still missing)."""
    with session_scope() as session:
        if not session.execute(update(DeployBatch).where(DeployBatch.id == batch_id, DeployBatch.requested_at.is_(None))
                               .values(requested_at=now)).rowcount:
            return None
        final = session.execute(select(func.count()).select_from(DeployBatch).where(
            DeployBatch.event_id == event_id, DeployBatch.number > number)).scalar() == 0
        waiting = select(Participant.id).where(
            Participant.event_id == event_id, Participant.role == Role.PARTICIPANT, Participant.removed_at.is_(None),
            Participant.deploy_batch.is_(None)).order_by(Participant.id)
        ids = list(session.execute(waiting if final else waiting.limit(size)).scalars())
        if ids:
            session.execute(update(Participant).where(Participant.id.in_(ids)).values(deploy_batch=number))
        # What it took: people may have left since the plan (the last one also takes who came since).
        session.execute(update(DeployBatch).where(DeployBatch.id == batch_id).values(size=len(ids)))
    return final


def _give_back(batch_id: int, event_id: int, number: int) -> None:
    with session_scope() as session:
        session.execute(update(DeployBatch).where(DeployBatch.id == batch_id).values(requested_at=None))
        session.execute(update(Participant).where(Participant.event_id == event_id,
                                                  Participant.deploy_batch == number).values(deploy_batch=None))
