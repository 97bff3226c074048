"""Read-only answers in PVE's shapes: node lists and status, cluster resources/status, VM status and config,
migration preconditions, task status and log, RRD data. Called with the state lock held."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from .errors import fail, param_error
from .model import UPID_RE, VM, GiB, MiB, Node
from .state import ClusterState
from .validation import split_list

VERSION = {"version": "9.1.1", "release": "9.1", "repoid": "42db4a6cf33dac83"}
KVERSION = "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z) x86_64"
HOST_MEM = 2 * GiB  # what the host itself uses
HOST_CPU = 0.01
VM_CPU = 0.05  # share of its vCPUs a running VM keeps busy
CLUSTER_NAME = "openvle"


def vm_on(state: ClusterState, node: str, vmid: int) -> VM:
    vm = state.vms.get(vmid)
    if vm is None or vm.node != node:
        raise fail(f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
    return vm


# ---- load figures -----------------------------------------------------------------------------------------------
def vm_cpu(vm: VM) -> float:
    return VM_CPU if vm.status == "running" else 0.0


def vm_mem(vm: VM) -> int:
    return vm.maxmem if vm.status == "running" else 0


def vm_uptime(state: ClusterState, vm: VM) -> int:
    return int(state.now() - vm.started) if vm.status == "running" and vm.started is not None else 0


def node_load(state: ClusterState, node: Node) -> tuple[float, int]:
    """(cpu fraction, memory used in bytes) from the VMs running on the node."""
    running = [v for v in state.vms.values() if v.node == node.name and v.status == "running"]
    cpu = HOST_CPU + sum(vm_cpu(v) * v.cpus for v in running) / max(1, node.maxcpu)
    mem = HOST_MEM + sum(v.maxmem for v in running)
    return min(1.0, round(cpu, 4)), min(node.maxmem, mem)


def node_uptime(state: ClusterState, node: Node) -> int:
    return int(state.wall() - node.booted)


def storage_usage(state: ClusterState, node: str, store: str) -> int:
    used = 0
    for vm in state.vms.values():
        if vm.node == node:
            used += sum(size // 10 for _, volid, size in vm.disks() if volid.startswith(store + ":"))
    return used + 2 * GiB


def _fingerprint(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


# ---- nodes ------------------------------------------------------------------------------------------------------
def nodes_list(state: ClusterState) -> list[dict[str, Any]]:
    out = []
    for node in state.nodes.values():
        entry: dict[str, Any] = {"id": f"node/{node.name}", "node": node.name, "type": "node",
                                 "status": "online" if state.node_online(node.name) else "offline",
                                 "maxcpu": node.maxcpu, "maxmem": node.maxmem, "maxdisk": 100 * GiB,
                                 "ssl_fingerprint": _fingerprint(node.name)}
        if entry["status"] == "online":  # PVE::API2Tools::extract_node_stats: live figures only while online
            cpu, mem = node_load(state, node)
            entry.update(cpu=cpu, mem=mem, disk=12 * GiB, uptime=node_uptime(state, node), level="")
        out.append(entry)
    return out


def node_status(state: ClusterState, name: str) -> dict[str, Any]:
    node = state.nodes[name]
    cpu, mem = node_load(state, node)
    load = cpu * node.maxcpu
    return {
        "cpu": cpu,
        "wait": 0.0004,
        "idle": 0,
        "loadavg": [f"{load:.2f}", f"{load * 0.9:.2f}", f"{load * 0.8:.2f}"],
        "memory": {"total": node.maxmem, "used": mem, "free": node.maxmem - mem, "available": node.maxmem - mem},
        "swap": {"total": 8 * GiB, "used": 0, "free": 8 * GiB},
        "rootfs": {"total": 100 * GiB, "used": 12 * GiB, "free": 88 * GiB, "avail": 83 * GiB},
        "ksm": {"shared": 0},
        "cpuinfo": {"cpus": node.maxcpu, "sockets": 1, "cores": node.maxcpu, "model": "QEMU Virtual CPU version 2.5+",
                    "mhz": "2999.998", "hvm": "1", "user_hz": 100, "flags": "fpu vme de pse tsc msr pae"},
        "uptime": node_uptime(state, node),
        "kversion": KVERSION,
        "pveversion": f"pve-manager/{VERSION['version']}/{VERSION['repoid']}",
        "current-kernel": {"sysname": "Linux", "release": "6.17.2-1-pve", "machine": "x86_64",
                           "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 (2025-10-21T11:55Z)"},
        "boot-info": {"mode": "efi", "secureboot": 0},
    }


def cluster_status(state: ClusterState) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "cluster", "id": "cluster", "name": CLUSTER_NAME, "nodes": len(state.nodes),
                                  "quorate": int(state.quorate()), "version": len(state.nodes) + 2}]
    first = next(iter(state.nodes), None)
    for node in state.nodes.values():
        out.append({"type": "node", "id": f"node/{node.name}", "name": node.name, "nodeid": node.nodeid,
                    "ip": node.ip, "online": int(state.node_online(node.name)), "local": int(node.name == first),
                    "level": ""})
    return out


# ---- VMs --------------------------------------------------------------------------------------------------------
def vm_entry(state: ClusterState, vm: VM) -> dict[str, Any]:
    """PVE::QemuServer::vmstatus for one VM (the /nodes/{node}/qemu list item)."""
    running = vm.status == "running"
    uptime = vm_uptime(state, vm)
    entry: dict[str, Any] = {
        "vmid": vm.vmid, "name": vm.name or f"VM {vm.vmid}", "status": vm.status, "cpus": vm.cpus,
        "cpu": vm_cpu(vm), "maxmem": vm.maxmem, "mem": vm_mem(vm), "maxdisk": vm.maxdisk, "disk": 0,
        "uptime": uptime, "netin": uptime * 1200 if running else 0, "netout": uptime * 300 if running else 0,
        "diskread": 350 * MiB if running else 0, "diskwrite": uptime * 4096 if running else 0,
    }
    if running:
        entry["pid"] = 10000 + vm.vmid
    if vm.template:
        entry["template"] = 1
    if vm.lock:
        entry["lock"] = vm.lock
    if vm.tags:
        entry["tags"] = vm.tags
    return entry


def qemu_list(state: ClusterState, node: str, full: bool) -> list[dict[str, Any]]:
    out = []
    for vm in sorted(state.vms.values(), key=lambda v: v.vmid):
        if vm.node == node:
            entry = vm_entry(state, vm)
            if full and vm.status == "running":
                entry.update({"running-machine": "pc-i440fx-9.2+pve1", "running-qemu": "9.2.0"})
            out.append(entry)
    return out


def vm_status(state: ClusterState, vm: VM) -> dict[str, Any]:
    entry = vm_entry(state, vm)
    entry["qmpstatus"] = vm.status
    entry["ha"] = {"managed": 0}
    if vm.status == "running":
        entry.update({"running-machine": "pc-i440fx-9.2+pve1", "running-qemu": "9.2.0"})
    if vm.conf.get("agent"):
        entry["agent"] = 1
    return entry


def vm_config(state: ClusterState, vm: VM) -> dict[str, Any]:
    return {**vm.conf, "digest": state.digest(vm)}


def cluster_resources(state: ClusterState, type_: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if type_ in (None, "vm"):
        for vm in sorted(state.vms.values(), key=lambda v: v.vmid):
            online = state.node_online(vm.node)
            entry: dict[str, Any] = {
                "id": f"qemu/{vm.vmid}", "type": "qemu", "vmid": vm.vmid, "node": vm.node,
                "name": vm.name or f"VM {vm.vmid}",
                # a node that stopped reporting leaves its guests' state unknown (stale RRD data)
                "status": vm.status if online else "unknown",
                "template": int(vm.template), "maxcpu": vm.cpus, "maxmem": vm.maxmem, "maxdisk": vm.maxdisk,
                "cpu": vm_cpu(vm) if online else 0, "mem": vm_mem(vm) if online else 0, "disk": 0,
                "uptime": vm_uptime(state, vm) if online else 0, "netin": 0, "netout": 0, "diskread": 0,
                "diskwrite": 0,
            }
            if vm.lock:
                entry["lock"] = vm.lock
            if vm.tags:
                entry["tags"] = vm.tags
            if vm.pool:
                entry["pool"] = vm.pool
            out.append(entry)
    if type_ in (None, "node"):
        for node in nodes_list(state):
            out.append({k: v for k, v in node.items() if k != "ssl_fingerprint"} | {"cgroup-mode": 2})
    if type_ in (None, "storage"):
        for node in state.nodes.values():
            online = state.node_online(node.name)
            for store, spec in state.config.storages.items():
                entry = {"id": f"storage/{node.name}/{store}", "type": "storage", "storage": store,
                         "node": node.name, "status": "available" if online else "unknown",
                         "plugintype": spec["type"], "shared": int(spec["shared"]),
                         "content": "iso,vztmpl,backup,images" if spec["type"] == "dir" else "images,rootdir"}
                if online:
                    entry.update(disk=storage_usage(state, node.name, store), maxdisk=spec["total"])
                out.append(entry)
    if type_ in (None, "sdn"):
        for node in state.nodes.values():
            out.append({"id": f"sdn/{node.name}/localnetwork", "type": "sdn", "sdn": "localnetwork",
                        "node": node.name, "status": "ok" if state.node_online(node.name) else "unknown"})
    return out


def next_id(state: ClusterState, vmid: int | None) -> str:
    # The real nextid answers a JSON string ("100"): Perl stringifies the number when it is used as a hash key.
    if vmid is not None:
        if vmid in state.vms:
            raise param_error({"vmid": f"VM {vmid} already exists"})
        return str(vmid)
    lower, upper = 100, 1_000_000
    for candidate in range(lower, upper):
        if candidate not in state.vms:
            return str(candidate)
    raise fail(f"unable to get any free VMID in range [{lower}, {upper}]")


def migrate_precondition(state: ClusterState, vm: VM, target: str | None) -> dict[str, Any]:
    if target is not None and target not in state.nodes:
        raise fail(f"no such cluster node '{target}'")
    local_disks = []
    for drive, volid, size in vm.disks():
        store = volid.split(":", 1)[0]
        if not state.config.storages.get(store, {}).get("shared"):
            local_disks.append({"volid": volid, "size": size, "drivename": drive, "is_attached": 1,
                                "is_unused": 0, "cdrom": 0, "is_tpmstate": 0, "replicate": 1, "shared": 0})
    others = [n for n in state.nodes if n != vm.node]
    return {
        "running": int(vm.status == "running"),
        "allowed_nodes": others,
        "not_allowed_nodes": {},
        "local_disks": local_disks,
        "local_resources": [],
        "mapped-resources": [],
        "mapped-resource-info": {},
        "has-dbus-vmstate": 0,
    }


# ---- tasks ------------------------------------------------------------------------------------------------------
def _find_task(state: ClusterState, node: str, upid: str):
    if not UPID_RE.match(upid):
        raise param_error({"upid": "unable to parse worker upid"})
    task = state.tasks.get(upid)
    return task if task is not None and task.node == node else None


def task_status(state: ClusterState, node: str, upid: str) -> dict[str, Any]:
    task = _find_task(state, node, upid)
    if task is None:
        raise param_error({"upid": "no such task"})
    user, _, tokenid = task.user.partition("!")
    out: dict[str, Any] = {"upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
                           "starttime": task.starttime, "type": task.type, "id": task.id, "user": user,
                           "status": "running" if task.running else "stopped"}
    if tokenid:
        out["tokenid"] = tokenid
    if not task.running:
        out["exitstatus"] = task.exitstatus
    return out


# A task that ended stays in the node's active list until pvedaemon archives it (moves it to the task index
# and marks it saved in /var/log/pve/tasks/active), which happens at the next update of that file (I).
ACTIVE_LINGER = 2.0


def _status_type(status: str | None) -> str:
    """PVE::Tools::upid_normalize_status_type."""
    if not status:
        return "unknown"
    if status == "OK":
        return "ok"
    if re.match(r"^WARNINGS: \d+$", status):
        return "warning"
    if status == "unexpected status":
        return "unknown"
    return "error"


def node_tasks(state: ClusterState, node: str, p: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """GET /nodes/{node}/tasks (PVE::API2::Tasks node_tasks): `source` archive (default, finished tasks, newest
    first), active (running ones with status RUNNING, and those ended but not yet archived, with their
    status and endtime) or all; filters; `start` skips, `limit` (default 50) cuts; total counts every match."""
    source = p.get("source", "archive")
    statuses = {"ok": True, "warning": True, "error": True, "unknown": True}
    if p.get("statusfilter") is not None and not p.get("errors"):
        statuses = dict.fromkeys(statuses, False)
        statuses.update({f.lower(): True for f in split_list(p["statusfilter"])})
    elif p.get("errors"):
        statuses["ok"] = False
    start, limit, count = p.get("start", 0), p.get("limit", 50), 0
    now = state.now()
    mine = [t for t in state.tasks.values() if t.node == node]
    is_active = {t.upid: t.running or now - t.end < ACTIVE_LINGER for t in mine}
    active = sorted((t for t in mine if is_active[t.upid]), key=lambda t: t.seq)
    archived = [] if source == "active" else sorted(
        (t for t in mine if not is_active[t.upid]), key=lambda t: (t.end, t.seq), reverse=True)
    chosen = (active if source in ("active", "all") else []) + archived
    out: list[dict[str, Any]] = []
    for task in chosen:
        if p.get("userfilter") and p["userfilter"].lower() not in task.user.lower():
            continue
        if p.get("typefilter") and task.type != p["typefilter"]:
            continue
        if p.get("vmid") and task.id != str(p["vmid"]):
            continue
        if (p.get("since") is not None and task.starttime < p["since"]) or (
                p.get("until") is not None and task.starttime > p["until"]):
            continue
        if not statuses[_status_type(task.exitstatus)]:
            continue
        count += 1
        if count <= start or len(out) >= limit:
            continue
        out.append(_task_entry(task, archived=not is_active[task.upid]))
    return out, count


def _task_entry(task, archived: bool) -> dict[str, Any]:
    """An archived task's user is split into user and tokenid (upid_decode); an active one keeps the full token
    id in `user`, as the active file has it."""
    entry: dict[str, Any] = {"upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
                             "starttime": task.starttime, "type": task.type, "id": task.id, "user": task.user}
    if archived and "!" in task.user:
        entry["user"], entry["tokenid"] = task.user.split("!", 1)
    entry["status"] = task.exitstatus if not task.running else "RUNNING"
    if not task.running:
        entry["endtime"] = task.endtime
    return entry


def task_log(state: ClusterState, node: str, upid: str, start: int, limit: int) -> tuple[list[dict], int]:
    """PVE::Tools::dump_logfile: 1-based lines from `start`, `limit` 0 reads to the end, total counts all lines."""
    task = _find_task(state, node, upid)
    if task is None:
        return [{"n": 1, "t": "unable to open file - No such file or directory"}], 1
    now = state.now()
    texts = [text for at, text in task.lines if at <= now]
    lines = []
    for index, text in enumerate(texts):
        if index < start:
            continue
        if limit and len(lines) >= limit:
            continue
        lines.append({"n": index + 1, "t": text})
    total = len(texts)
    if total == 0:
        return [{"n": 1, "t": "no content"}], 1
    return lines, total


# ---- RRD --------------------------------------------------------------------------------------------------------
RRD_STEPS = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}


def _wobble(key: str, t: int) -> float:
    """A reproducible value in 0..1 for one series at one time."""
    return int(hashlib.md5(f"{key}:{t}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def rrddata(state: ClusterState, name: str, timeframe: str, cf: str) -> list[dict[str, Any]]:
    node = state.nodes[name]
    cpu, mem = node_load(state, node)
    step = RRD_STEPS[timeframe]
    last = int(state.wall()) // step * step
    peak = 1.25 if cf == "MAX" else 1.0
    points = []
    for i in range(70):
        t = last - (69 - i) * step
        w = _wobble(name, t)
        c = min(1.0, cpu * (0.7 + 0.6 * w) * peak)
        points.append({
            "time": t, "cpu": round(c, 6), "maxcpu": node.maxcpu, "iowait": round(0.002 * w, 6),
            "loadavg": round(c * node.maxcpu * (0.9 + 0.2 * math.sin(t / 3600)), 2),
            "memtotal": node.maxmem, "memused": min(node.maxmem, int(mem * (0.95 + 0.05 * w) * peak)),
            "memavailable": max(0, node.maxmem - mem), "swaptotal": 8 * GiB, "swapused": 0,
            "roottotal": 100 * GiB, "rootused": 12 * GiB,
            "netin": round(2000 + 50000 * cpu * w * peak, 2), "netout": round(1000 + 20000 * cpu * w * peak, 2),
        })
    return points
