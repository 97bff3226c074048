"""Node sync (pve_periodic): Proxmox's nodes, VMs and templates into the DB, metrics into MongoDB.

Pages and placement read only the DB; this keeps it fresh every WORKER_PVE_PERIODIC_INTERVAL s.
VMs we made that vanished from Proxmox are marked missing; VMs carrying our tag that the DB does
not know are reported as orphans (in the Task's result and log), never touched.
"""

from __future__ import annotations

import logging
from collections import Counter

from sqlalchemy import select

from openvle.clients.metrics import get_metrics_store
from openvle.clients.proxmox import Proxmox, ProxmoxError, get_proxmox
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Node, NodeStatus, NodeStorage, Template, Vm, VmState, utcnow
from openvle.operations import operation
from openvle.placement import template_storage
from openvle.settings import get_settings

log = logging.getLogger("openvle.jobs.nodes")


@operation("nodes.sync", queue="pve_periodic")
def sync_nodes(ctx: TaskContext) -> dict:
    pve = get_proxmox()
    nodes = pve.nodes()
    resources = pve.vm_resources()
    storages = pve.storage_resources()
    now = utcnow()
    by_vmid = {int(r["vmid"]): r for r in resources if "vmid" in r}
    running = Counter(r["node"] for r in resources if r.get("status") == "running" and not r.get("template"))
    total = Counter(r["node"] for r in resources if not r.get("template"))

    with session_scope() as session:
        known = {n.name: n for n in session.execute(select(Node)).scalars()}
        for data in nodes:
            node = known.get(data["node"]) or Node(name=data["node"])
            session.add(node)
            node.status = data.get("status", NodeStatus.UNKNOWN)
            node.cpu = float(data.get("cpu") or 0)
            node.maxcpu = int(data.get("maxcpu") or 0)
            node.mem = int(data.get("mem") or 0)
            node.maxmem = int(data.get("maxmem") or 0)
            node.uptime = int(data.get("uptime") or 0)
            node.vms_running, node.vms_total = running[node.name], total[node.name]
            node.synced_at = now
        for name, node in known.items():
            if name not in {d["node"] for d in nodes}:
                node.status, node.synced_at = NodeStatus.UNKNOWN, now

        _sync_storages(session, storages, now)
        online = {d["node"] for d in nodes if d.get("status") == NodeStatus.ONLINE}

        for template in session.execute(select(Template)).scalars():
            found = by_vmid.get(template.pve_vmid)
            if found is not None:
                disk = int(found.get("maxdisk") or template.maxdisk or 0)
                # Its config (one request per template) only when its disk may be elsewhere: the
                # first sync, a migration or a changed disk; else every sync re-reads every template.
                moved = template.storage is None or template.node != found["node"] or template.maxdisk != disk
                template.node = found["node"]
                template.maxmem = int(found.get("maxmem") or template.maxmem)
                template.maxdisk = disk
                if moved:
                    template.storage = _storage_of(pve, ctx, template, online) or template.storage

        missing, ours = [], set()
        for vm in session.execute(select(Vm).where(Vm.vmid.is_not(None), Vm.state.in_(VmState.LIVE))).scalars():
            ours.add(vm.vmid)
            found = by_vmid.get(vm.vmid)
            if found is not None:
                vm.node, vm.status, vm.lock = found["node"], found.get("status"), found.get("lock") or None
                if vm.state == VmState.MISSING:
                    vm.state, vm.missing_since = VmState.READY, None
            elif vm.state == VmState.READY:
                vm.state, vm.missing_since, vm.status = VmState.MISSING, now, None
                missing.append(vm.vmid)

    tag = get_settings().PVE_TAG
    orphans = sorted(
        vmid for vmid, r in by_vmid.items()
        if vmid not in ours and tag in str(r.get("tags") or "").split(";")
    )
    if missing:
        ctx.log(f"VMs missing from Proxmox: {missing}", level="warning")
    if orphans:
        ctx.log(f"VMs tagged {tag!r} that no event knows (orphans): {orphans}", level="warning")

    stored = 0
    store = get_metrics_store()
    if store is not None:
        stored = store.record([
            {"node": d["node"], "time": now.replace(tzinfo=None), "status": d.get("status"),
             "cpu": float(d.get("cpu") or 0), "maxcpu": int(d.get("maxcpu") or 0), "mem": int(d.get("mem") or 0),
             "maxmem": int(d.get("maxmem") or 0), "vms_running": running[d["node"]], "vms_total": total[d["node"]]}
            for d in nodes
        ])
    return {"nodes": len(nodes), "storages": len(storages), "vms": len(by_vmid), "missing": missing,
            "orphans": orphans, "metrics": stored}


def _sync_storages(session, storages: list[dict], now) -> None:
    """One row per node and storage; a node that stopped reporting leaves its storages unknown."""
    known = {(s.node, s.storage): s for s in session.execute(select(NodeStorage)).scalars()}
    seen = set()
    for data in storages:
        key = (data["node"], data["storage"])
        seen.add(key)
        row = known.get(key) or NodeStorage(node=key[0], storage=key[1])
        session.add(row)
        row.shared = bool(int(data.get("shared") or 0))
        row.status = data.get("status") or "unknown"
        row.disk, row.maxdisk = int(data.get("disk") or 0), int(data.get("maxdisk") or 0)
        row.synced_at = now
    for key, row in known.items():
        if key not in seen:
            row.status, row.synced_at = "unknown", now


def _storage_of(pve: Proxmox, ctx: TaskContext, template: Template, online: set[str]) -> str | None:
    """Where the template's disks are, and so its clones' (they are made without a storage option).
    A node that is down, or a config that cannot be read, leaves what the last sync saw: the sync of
    everything else must not wait for it."""
    if template.node not in online:
        return None
    try:
        return template_storage(pve.vm_config(template.node, template.pve_vmid))
    except ProxmoxError as exc:
        ctx.log(f"storage of template {template.name} not read: {exc}", level="warning")
        return None
