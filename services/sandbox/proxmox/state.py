"""The in-memory cluster: one lock, a clock, nodes, VMs, tasks; the admin operations and the task engine.

Tasks are evaluated lazily: `advance()` (called under the lock at the start of every request and by every
public method) completes, in order of their end time, the tasks whose time has come. Outcomes therefore
depend only on elapsed time, never on thread scheduling.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..faults import EveryNth
from .model import (
    DURATION_DEFAULTS,
    VM,
    Faults,
    GiB,
    MiB,
    Node,
    SimConfig,
    Task,
    conf_digest,
    format_size,
    make_upid,
    volume_name,
)

VM_STATUSES = ("running", "stopped")
LOCKS = ("backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending",
         "suspended", "destroyed")
FINISHED_TASKS_KEPT = 5000


@dataclass
class FaultDecision:
    drop: bool = False
    latency: float = 0.0
    error: str | None = None


def random_mac(rng: random.Random) -> str:
    # BC:24:11 is Proxmox's OUI, used by PVE for generated MACs
    return "BC:24:11:" + ":".join(f"{rng.randrange(256):02X}" for _ in range(3))


class ClusterState:
    def __init__(self, *, clock: Clock | None = None, durations: dict[str, float] | None = None,
                 storage_concurrency: int = 4, lock_wait: float = 1.0, auth_fail_delay: float = 3.0,
                 seed: int | None = None):
        self.lock = threading.RLock()
        self._holds = threading.Condition()  # requests held back (hold_requests), apart from the cluster's lock
        self._holding = self._release_generation = 0
        self.clock = clock or Clock()
        self._epoch = self.clock.time() - self.clock.monotonic()
        self._initial = SimConfig(storage_concurrency=storage_concurrency, lock_wait=lock_wait,
                                  auth_fail_delay=auth_fail_delay)
        self._initial.durations.update(_check_durations(durations or {}))
        self._initial_seed = seed
        self.reset()

    # ---- time -------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.monotonic()

    def wall(self, mono: float | None = None) -> float:
        return self._epoch + (self.now() if mono is None else mono)

    # ---- admin ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty cluster, the configuration the simulator was built with, no faults."""
        with self.lock:
            self.nodes: dict[str, Node] = {}
            self.vms: dict[int, VM] = {}
            self.tasks: dict[str, Task] = {}
            self._running: list[Task] = []
            self.config = copy.deepcopy(self._initial)
            self.faults = Faults(seed=self._initial_seed)
            self.rng = random.Random(self._initial_seed)  # fault decisions
            self.error_plan = EveryNth()
            self._clones_started = 0  # counted for faults.clone_lock_timeouts
            self.release_held()
            self._hold_route, self._hold_count, self._hold_path = "", 0, ""
            # Requests answered, by route ("GET /nodes/{node}/qemu/{vmid}/config"): what a client asks how often
            self.served: Counter[str] = Counter()
            self._clone_requests = 0  # counted for faults.lost_clone_responses
            self.lose_plan = EveryNth()  # faults.lose_every over write requests
            self.ids = random.Random()  # MACs, UUIDs: need not be reproducible
            self._seq = 0
            self._pid = 0x1A000

    def configure(self, durations: dict[str, float] | None = None, storage_concurrency: int | None = None,
                  lock_wait: float | None = None, auth_fail_delay: float | None = None,
                  storages: dict[str, dict[str, Any]] | None = None, pools: list[str] | None = None) -> dict:
        with self.lock:
            cfg = self.config
            if durations:
                cfg.durations.update(_check_durations(durations))
            if storage_concurrency is not None:
                if int(storage_concurrency) < 1:
                    raise ValueError("storage_concurrency must be >= 1")
                cfg.storage_concurrency = int(storage_concurrency)
            if lock_wait is not None:
                cfg.lock_wait = _non_negative("lock_wait", lock_wait)
            if auth_fail_delay is not None:
                cfg.auth_fail_delay = _non_negative("auth_fail_delay", auth_fail_delay)
            if storages is not None:
                for name, spec in storages.items():
                    cfg.storages[name] = {"type": str(spec.get("type", "lvmthin")), "shared": bool(spec.get("shared")),
                                          "total": int(spec.get("total", 400 * GiB))}
            if pools is not None:
                cfg.pools = [str(p) for p in pools]
            return cfg.as_dict()

    def set_faults(self, latency: float | None = None, error_rate: float | None = None,
                   drop_rate: float | None = None, down_nodes: list[str] | None = None,
                   seed: int | None = None, error_every: int | None = None,
                   clone_lock_timeouts: list[int] | None = None, lost_clone_responses: list[int] | None = None,
                   lose_every: int | None = None) -> dict:
        """Rates draw from a seeded generator; `error_every`, `clone_lock_timeouts`,
        `lost_clone_responses` and `lose_every` are exact plans counted from this call: every n-th
        API request fails, the listed clones (1 = the next one started) end with a storage lock
        timeout, the listed clone requests (1 = the next) and every n-th write request are carried
        out but their answer is lost (the connection closes first)."""
        with self.lock:
            f = self.faults
            if latency is not None:
                f.latency = _non_negative("latency", latency)
            if error_rate is not None:
                f.error_rate = _rate("error_rate", error_rate)
            if error_every is not None:
                f.error_every = self.error_plan.set(error_every)
            if clone_lock_timeouts is not None:
                if any(int(n) < 1 for n in clone_lock_timeouts):
                    raise ValueError("clone_lock_timeouts counts clones from 1")
                f.clone_lock_timeouts = sorted({int(n) for n in clone_lock_timeouts})
                self._clones_started = 0
            if lost_clone_responses is not None:
                if any(int(n) < 1 for n in lost_clone_responses):
                    raise ValueError("lost_clone_responses counts clone requests from 1")
                f.lost_clone_responses = sorted({int(n) for n in lost_clone_responses})
                self._clone_requests = 0
            if lose_every is not None:
                f.lose_every = self.lose_plan.set(lose_every)
            if drop_rate is not None:
                f.drop_rate = _rate("drop_rate", drop_rate)
            if down_nodes is not None:
                f.down_nodes = [str(n) for n in down_nodes]
            if seed is not None:
                f.seed = int(seed)
                self.rng = random.Random(f.seed)
            return f.as_dict()

    def add_node(self, name: str, maxcpu: int | None = None, maxmem: int | None = None, online: bool | None = None,
                 ip: str | None = None) -> dict:
        """Create a node, or update the given fields of an existing one."""
        from .validation import NODE_RE  # the same rule the API applies to node names

        with self.lock:
            self.advance()
            if not NODE_RE.match(name or ""):
                raise ValueError(f"invalid node name {name!r}")
            node = self.nodes.get(name)
            if node is None:
                nodeid = max((n.nodeid for n in self.nodes.values()), default=0) + 1
                node = Node(name=name, nodeid=nodeid, ip=ip or f"10.0.0.{nodeid}",
                            booted=self.wall() - 3 * 86400 - nodeid * 3600)
                self.nodes[name] = node
            if maxcpu is not None:
                node.maxcpu = int(maxcpu)
            if maxmem is not None:
                node.maxmem = int(maxmem)
            if online is not None:
                node.online = bool(online)
            if ip is not None:
                node.ip = ip
            return self._node_dict(node)

    def add_vm(self, vmid: int, node: str, name: str | None = None, template: bool = False, status: str = "stopped",
               maxmem: int = 2 * GiB, cores: int = 2, tags: str | None = None, storage: str = "local-lvm",
               lock: str | None = None, protection: bool = False, description: str | None = None,
               disk_size: int = 32 * GiB, pool: str | None = None) -> dict:
        """Put a VM or template straight into the cluster (no task), as if it had always been there."""
        with self.lock:
            self.advance()
            vmid = int(vmid)
            if not 100 <= vmid <= 999_999_999:
                raise ValueError("vmid must be in 100..999999999")
            if vmid in self.vms:
                raise ValueError(f"VM {vmid} already exists")
            if node not in self.nodes:
                raise ValueError(f"no such node {node!r}")
            if status not in VM_STATUSES:
                raise ValueError(f"status must be one of {VM_STATUSES}")
            if template and status == "running":
                raise ValueError("a template cannot be running")
            if storage not in self.config.storages:
                raise ValueError(f"no such storage {storage!r} (known: {sorted(self.config.storages)})")
            if lock is not None and lock not in LOCKS:
                raise ValueError(f"lock must be one of {LOCKS}")
            store_type = self.config.storages[storage]["type"]
            volid = f"{storage}:{volume_name(store_type, vmid, bool(template))}"
            conf: dict[str, Any] = {
                "boot": "order=scsi0;net0",
                "cores": int(cores),
                "cpu": "x86-64-v2-AES",
                "memory": str(int(maxmem) // MiB),
                "meta": f"creation-qemu=9.2.0,ctime={int(self.wall())}",
                "name": name or f"vm{vmid}",
                "net0": f"virtio={random_mac(self.ids)},bridge=vmbr0,firewall=1",
                "numa": 0,
                "ostype": "l26",
                "scsi0": f"{volid},iothread=1,size={format_size(int(disk_size))}",
                "scsihw": "virtio-scsi-single",
                "smbios1": f"uuid={uuid.UUID(int=self.ids.getrandbits(128), version=4)}",
                "sockets": 1,
                "vmgenid": str(uuid.UUID(int=self.ids.getrandbits(128), version=4)),
            }
            if template:
                conf["template"] = 1
            if tags:
                conf["tags"] = tags
            if lock:
                conf["lock"] = lock
            if protection:
                conf["protection"] = 1
            if description:
                conf["description"] = description
            vm = VM(vmid=vmid, node=node, conf=conf, status=status, pool=pool)
            if status == "running":
                vm.started = self.now()
            self.vms[vmid] = vm
            return self._vm_dict(vm)

    def remove_vm(self, vmid: int) -> bool:
        with self.lock:
            self.advance()
            return self.vms.pop(int(vmid), None) is not None

    def seed_cluster(self) -> None:
        """The `--seed` cluster: pve1..pve3 (8 CPUs, 32 GiB) and template 9000 on pve1."""
        with self.lock:
            for name in ("pve1", "pve2", "pve3"):
                self.add_node(name, maxcpu=8, maxmem=32 * GiB)
            if 9000 not in self.vms:
                self.add_vm(9000, "pve1", "ubuntu-2404-template", template=True, maxmem=2 * GiB, cores=2,
                            storage="local-lvm")

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            self.advance()
            return {
                "nodes": [self._node_dict(n) for n in self.nodes.values()],
                "vms": [self._vm_dict(v) for v in sorted(self.vms.values(), key=lambda v: v.vmid)],
                "tasks": [self._task_dict(t) for t in self.tasks.values()],
                "faults": self.faults.as_dict(),
                "config": self.config.as_dict(),
            }

    # ---- queries used by the API ------------------------------------------------------------------------------
    def node_online(self, name: str) -> bool:
        node = self.nodes.get(name)
        return bool(node and node.online and name not in self.faults.down_nodes)

    def quorate(self) -> bool:
        total = len(self.nodes)
        return total == 0 or sum(self.node_online(n) for n in self.nodes) * 2 > total

    def digest(self, vm: VM) -> str:
        return conf_digest(vm.conf)

    def decide_faults(self, method: str) -> FaultDecision:
        """Draw this request's injected faults (seedable, so a run can be replayed)."""
        with self.lock:
            f = self.faults
            decision = FaultDecision(latency=f.latency)
            if f.drop_rate > 0 and self.rng.random() < f.drop_rate:
                decision.drop = True
            elif self.error_plan.hit() or (f.error_rate > 0 and self.rng.random() < f.error_rate):
                # Injected, not derived from state: texts a real cluster gives for transient trouble.
                # fork_worker's failure for calls that start a task, a refused pvedaemon connection otherwise.
                decision.error = ("got no worker upid - start worker failed\n" if method in ("POST", "DELETE")
                                  else "Connection refused\n")
            return decision

    # ---- requests held back: a caller stopped (killed) while it waits for an answer --------------------

    def hold_requests(self, route: str, count: int = 1, path_contains: str = "") -> None:
        """Hold each of the next `count` requests to `route` (as `served` names it, for example
        "GET /nodes/{node}/tasks/{upid}/status") whose path contains `path_contains` (a clone's
        UPID has "qmclone"), before it is handled, until release_held(). A caller killed meanwhile
        is known to be inside that request, and nothing was done for it."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an integer >= 0")
        with self._holds:
            self._hold_route, self._hold_count, self._hold_path = route, count, path_contains

    def hold_if_planned(self, route: str, path: str = "") -> None:
        """Called by the API before it handles a request: wait here while the plan holds it."""
        with self._holds:
            if route != self._hold_route or self._hold_count <= 0 or self._hold_path not in path:
                return
            self._hold_count -= 1
            release = self._release_generation
            self._holding += 1
            self._holds.notify_all()
            while release == self._release_generation:
                self._holds.wait()
            self._holding -= 1

    def wait_holding(self, timeout: float = 5.0) -> None:
        """Block until a request is being held (see hold_requests)."""
        with self._holds:
            if not self._holds.wait_for(lambda: self._holding > 0, timeout):
                raise TimeoutError(f"no request held within {timeout} s")

    def release_held(self) -> None:
        """Let every held request go on (its caller may be gone: its answer then goes nowhere)."""
        with self._holds:
            self._release_generation += 1
            self._holds.notify_all()

    def answer_lost(self, method: str, is_clone: bool) -> bool:
        """Count a write request that was carried out; True when the plan says its answer is lost."""
        if method not in ("POST", "PUT", "DELETE"):
            return False
        with self.lock:
            lost = self.lose_plan.hit()
            if is_clone:
                self._clone_requests += 1
                lost = lost or self._clone_requests in self.faults.lost_clone_responses
            return lost

    def planned_clone_lock_timeout(self) -> bool:
        """Count a clone that starts now; True when the plan says it meets a storage lock timeout."""
        self._clones_started += 1
        return self._clones_started in self.faults.clone_lock_timeouts

    # ---- task engine ------------------------------------------------------------------------------------------
    def start_task(self, node: str, type_: str, id_: str, user: str, duration: float, *,
                   error: str | None = None, meta: dict[str, Any] | None = None) -> Task:
        now = self.now()
        self._seq += 1
        self._pid += 1 + self._seq % 7
        host = self.nodes[node]
        pstart = int((self.wall(now) - host.booted) * 100)  # clock ticks since boot, as /proc/<pid>/stat has it
        starttime = int(self.wall(now))
        upid = make_upid(node, self._pid, pstart, starttime, type_, id_, user)
        task = Task(upid=upid, node=node, type=type_, id=id_, user=user, pid=self._pid, pstart=pstart,
                    starttime=starttime, start=now, end=now + max(0.0, duration), seq=self._seq, error=error,
                    meta=meta or {})
        self.tasks[upid] = task
        self._running.append(task)
        return task

    def active_tasks(self) -> list[Task]:
        return [t for t in self._running if t.running]

    def advance(self) -> None:
        with self.lock:
            now = self.now()
            while True:
                due = [t for t in self._running if t.end <= now]
                if not due:
                    break
                task = min(due, key=lambda t: (t.end, t.seq))
                self._running.remove(task)
                self._complete(task)
            self._trim()

    def _complete(self, task: Task) -> None:
        err = task.error
        if err is None and task.finish is not None:
            err = task.finish(task)
        if err is not None and task.cleanup is not None:
            task.cleanup()
        task.exitstatus = "OK" if err is None else " ".join(err.strip().split("\n"))
        task.log(task.end, "TASK OK" if err is None else f"TASK ERROR: {err.strip()}")
        task.endtime = int(self.wall(task.end))

    def _trim(self) -> None:
        if len(self.tasks) <= FINISHED_TASKS_KEPT + len(self._running):
            return
        finished = [u for u, t in self.tasks.items() if not t.running]
        for upid in finished[: len(finished) - FINISHED_TASKS_KEPT]:
            del self.tasks[upid]

    # ---- snapshot shapes --------------------------------------------------------------------------------------
    def _node_dict(self, n: Node) -> dict[str, Any]:
        used = sum(v.maxmem for v in self.vms.values() if v.node == n.name and v.status == "running")
        return {"name": n.name, "nodeid": n.nodeid, "ip": n.ip, "maxcpu": n.maxcpu, "maxmem": n.maxmem,
                "online": self.node_online(n.name), "admin_online": n.online, "vm_mem": used}

    def _vm_dict(self, v: VM) -> dict[str, Any]:
        return {"vmid": v.vmid, "node": v.node, "name": v.name, "template": v.template, "status": v.status,
                "lock": v.lock, "tags": v.tags, "maxmem": v.maxmem, "cores": v.cores, "storage": v.storage,
                "disks": [d[1] for d in v.disks()], "protection": bool(v.conf.get("protection")),
                "description": v.conf.get("description"), "pool": v.pool, "digest": self.digest(v)}

    def _task_dict(self, t: Task) -> dict[str, Any]:
        return {"upid": t.upid, "node": t.node, "type": t.type, "id": t.id, "user": t.user,
                "status": "running" if t.running else "stopped", "exitstatus": t.exitstatus,
                "starttime": t.starttime, "endtime": t.endtime}


def _check_durations(durations: dict[str, float]) -> dict[str, float]:
    unknown = set(durations) - set(DURATION_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown durations {sorted(unknown)} (known: {sorted(DURATION_DEFAULTS)})")
    return {k: _non_negative(k, v) for k, v in durations.items()}


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def _rate(name: str, value: float) -> float:
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be within 0..1")
    return value
