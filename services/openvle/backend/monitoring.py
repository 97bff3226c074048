"""What operators watch, over HTTP (admins): queues, workers, the scheduler, Proxmox nodes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS
from openvle.service import monitoring
from openvle.service.views import NodeMetricView, NodeView, QueueView, SchedulersView, WorkerView

router = APIRouter(prefix="/api", tags=["monitoring"], responses=ERRORS, dependencies=[Depends(current_actor)])


@router.get("/queues", name="monitoring.queues", response_model=list[QueueView],
            summary="Per queue: its policy, the count of each RQ registry, the oldest waiting job's age, workers")
def queues(actor: Actor = Depends(current_actor)) -> list[QueueView]:
    return monitoring.queues(actor)


@router.get("/workers", name="monitoring.workers", response_model=list[WorkerView],
            summary="Live RQ workers by role, with the job and Task each is running")
def workers(actor: Actor = Depends(current_actor)) -> list[WorkerView]:
    return monitoring.workers(actor)


@router.get("/scheduler", name="monitoring.scheduler", response_model=SchedulersView,
            summary="Scheduler heartbeats, and the last and next run of each periodic job")
def scheduler(actor: Actor = Depends(current_actor)) -> SchedulersView:
    return monitoring.schedulers(actor)


@router.get("/nodes", name="monitoring.nodes", response_model=list[NodeView],
            summary="Proxmox nodes as the last sync saw them, with clone slots in use")
def nodes(actor: Actor = Depends(current_actor)) -> list[NodeView]:
    return monitoring.nodes(actor)


@router.get("/nodes/{node}/history", name="monitoring.node_history", response_model=list[NodeMetricView],
            summary="A node's metric history (kept when MONGO_URL is set)")
def node_history(node: str, hours: int = Query(24, ge=1, le=24 * 366),
                 actor: Actor = Depends(current_actor)) -> list[NodeMetricView]:
    return monitoring.node_history(actor, node, hours)
