"""Where a new VM goes and which VM id it gets.

Node: the allowed online node with the most free memory, counting the memory of our VMs placed
there that do not run yet (they will), so a burst spreads instead of piling onto one node between
two node syncs. VM id: from PVE_VMID_RANGE, skipping ids the DB or the cluster already use, claimed
in Redis (SET NX) so two workers never pick the same id; /cluster/nextid reserves nothing.
"""

from __future__ import annotations

import re

from sqlalchemy import func, or_, select, update

from openvle.clients.proxmox import Proxmox, ProxmoxPermanentError
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Node, NodeStatus, Template, Vm, VmState
from openvle.settings import get_settings

VMID_CLAIM_TTL = 7 * 24 * 3600  # a claimed id stays claimed while its VM row holds it anyway


_DISK = re.compile(r"^(scsi|virtio|ide|sata|efidisk|tpmstate)\d+$")


_MEMORY = re.compile(r"(?:^|current=)(\d+)")  # "2048" or "current=2048,..." (MiB)


def _disk_storages(config: dict) -> list[str]:
    """The storages of a VM's disks (not CD-ROMs), in the order of their drive names."""
    return [str(config[key]).split(":", 1)[0] for key in sorted(config)
            if _DISK.match(key) and ":" in str(config[key]) and "media=cdrom" not in str(config[key])]


def template_storage(config: dict) -> str | None:
    """Where a template's first disk is, and so its clones' (the capacity check counts disk there)."""
    found = _disk_storages(config)
    return found[0] if found else None


def clone_targets(pve: Proxmox, template: Template, config: dict) -> set[str] | None:
    """Nodes a clone of `template` can be created on: any (None) when all its disks are on shared
    storage; else only the template's own node ("can't clone VM to node ... uses local storage")."""
    storages = set(_disk_storages(config))
    shared = {r.get("storage") for r in pve.storage_resources() if int(r.get("shared") or 0)}
    return None if storages <= shared else {template.node}


def choose_node(pve: Proxmox, template: Template) -> str:
    settings = get_settings()
    allowed = set(settings.pve_nodes)
    live = {n["node"]: n for n in pve.nodes() if n.get("status") == NodeStatus.ONLINE}
    candidates = [name for name in live if not allowed or name in allowed]
    if not candidates:
        where = f" among PVE_NODES ({', '.join(sorted(allowed))})" if allowed else ""
        raise ProxmoxPermanentError(f"no online Proxmox node{where} to place a VM on")
    config = pve.vm_config(template.node, template.pve_vmid)
    if not template.maxmem:
        _learn_memory(template, config)
    targets = clone_targets(pve, template, config)
    if targets is not None:
        candidates = [name for name in candidates if name in targets]
        if not candidates:
            raise ProxmoxPermanentError(
                f"template {template.name} has disks on local storage of {template.node}, which is offline or "
                "not in PVE_NODES: clones of it can only be made there"
            )
    with session_scope() as session:
        pending = dict(session.execute(
            select(Vm.node, func.coalesce(func.sum(Template.maxmem), 0))
            .join(Template, Template.id == Vm.template_id)
            .where(Vm.state.in_((VmState.PROVISIONING, VmState.READY)),
                   or_(Vm.status.is_(None), Vm.status != "running"), Vm.node.in_(candidates))
            .group_by(Vm.node)
        ).all())

    def free(name: str) -> int:
        node = live[name]
        return int(node.get("maxmem", 0)) - int(node.get("mem", 0)) - int(pending.get(name, 0))

    return max(sorted(candidates), key=free)


def _learn_memory(template: Template, config: dict) -> None:
    """A template created since the last node sync: take its memory from its config, so the clones
    placed before that sync count, and a burst spreads over the nodes instead of piling on one."""
    found = _MEMORY.search(str(config.get("memory", "")))
    if found:
        template.maxmem = int(found.group(1)) * 1024 * 1024
        with session_scope() as session:
            session.execute(update(Template).where(Template.id == template.id, Template.maxmem == 0)
                            .values(maxmem=template.maxmem))


def claim_vmid(pve: Proxmox, vm_id: int, also_skip: set[int] = frozenset()) -> int:
    low, high = get_settings().vmid_range
    with session_scope() as session:
        used = set(session.execute(select(Vm.vmid).where(Vm.vmid.is_not(None))).scalars())
    used |= {int(r["vmid"]) for r in pve.vm_resources() if "vmid" in r}
    used |= set(also_skip)
    redis = get_redis()
    for vmid in range(low, high + 1):
        if vmid in used:
            continue
        if redis.set(f"openvle:vmid:{vmid}", vm_id, nx=True, ex=VMID_CLAIM_TTL):
            return vmid
        if int(redis.get(f"openvle:vmid:{vmid}") or 0) == vm_id:
            return vmid
    raise ProxmoxPermanentError(f"no free VM id left in PVE_VMID_RANGE {low}-{high}: widen it")


def release_vmid(vmid: int, vm_id: int) -> None:
    """Give a deleted VM's id back to the range (only if the claim is still this VM row's)."""
    key = f"openvle:vmid:{vmid}"
    redis = get_redis()
    if int(redis.get(key) or 0) == vm_id:
        redis.delete(key)


def known_nodes() -> list[Node]:
    with session_scope() as session:
        return list(session.execute(select(Node).order_by(Node.name)).scalars())
