"""Proxmox nodes (admins): each node's memory, CPU and VM count as the last sync saw them, and, when
node metric history is kept (MONGO_URL), a chart over time of each drawn here as SVG."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from openvle.accounts.identity import Actor
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.chart import Series, line_chart
from openvle.backend.pages.guard import admin_actor
from openvle.backend.pages.render import poll_answer, polled, render
from openvle.errors import Invalid
from openvle.service import monitoring
from openvle.service.views import NodeMetricView

router = APIRouter(route_class=PageRoute, include_in_schema=False)

HOURS = {1: "1 hour", 6: "6 hours", 24: "24 hours", 168: "7 days"}


def charts(node: str, history: list[NodeMetricView], hours: int):
    """Two charts a node: CPU and memory in %, and its VMs (running, all)."""
    if not history:
        return None
    load = [Series("CPU", [(m.time, m.cpu * 100) for m in history]),
            Series("Memory", [(m.time, m.mem * 100 / m.maxmem if m.maxmem else 0.0) for m in history])]
    vms = [Series("VMs running", [(m.time, m.vms_running) for m in history]),
           Series("VMs in all", [(m.time, m.vms_total) for m in history])]
    span = HOURS.get(hours, f"{hours} hours")
    return (line_chart(f"{node}: CPU and memory use over the last {span}, in %", load, "%", 100),
            line_chart(f"{node}: VMs over the last {span}", vms))


def _box(request: Request, actor: Actor, hours: int):
    histories = monitoring.node_histories(actor, hours)
    drawn = {name: charts(name, history, hours) for name, history in (histories or {}).items()}
    return polled(request, "admin/_nodes.html", actor, url=f"/nodes/box?hours={hours}", box_id="nodes", every="10s",
                  nodes=monitoring.nodes(actor), kept=histories is not None, charts=drawn, hours=hours)


def _hours(hours: int = Query(24)) -> int:
    if hours not in HOURS:
        raise Invalid(f"hours: choose {', '.join(map(str, HOURS))}, not {hours}")
    return hours


@router.get("/nodes", name="pages.nodes")
def nodes_page(request: Request, hours: int = Depends(_hours), actor: Actor = Depends(admin_actor)) -> Response:
    box, _ = _box(request, actor, hours)
    return render(request, "admin/nodes.html", actor, title="Nodes", box=box, hours=hours, choices=HOURS)


@router.get("/nodes/box", name="pages.nodes_box")
def nodes_box(request: Request, hours: int = Depends(_hours), actor: Actor = Depends(admin_actor)) -> Response:
    return poll_answer(request, *_box(request, actor, hours))
