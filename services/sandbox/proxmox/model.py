"""The cluster's records: nodes, VMs (config kept as PVE stores it), tasks, settings and faults."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KiB, MiB, GiB = 1024, 1024**2, 1024**3

DURATION_DEFAULTS: dict[str, float] = {
    "linked_clone": 2.0,
    "full_clone": 20.0,
    "start": 1.0,
    "stop": 1.0,
    "shutdown": 2.0,
    "reset": 0.5,
    "reboot": 2.0,
    "destroy": 1.0,
    "migrate": 3.0,
}

# A stock PVE install: `local` (directory, qcow2 files) and `local-lvm` (LVM-thin, raw volumes), both node-local.
STORAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "local": {"type": "dir", "shared": False, "total": 100 * GiB},
    "local-lvm": {"type": "lvmthin", "shared": False, "total": 400 * GiB},
}

DRIVE_RE = re.compile(r"^(ide|sata|scsi|virtio)\d+$")


def parse_size(text: str) -> int:
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT])?$", text)
    if not m:
        return 0
    factor = {"K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}.get(m.group(2) or "", 1)
    return int(float(m.group(1)) * factor)


def format_size(size: int) -> str:
    for unit, factor in (("T", 1024 * GiB), ("G", GiB), ("M", MiB), ("K", KiB)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def human_size(size: float) -> str:
    """PVE's render_bytes as seen in clone logs: `32.0 GiB`."""
    for unit, factor in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.1f} B"


@dataclass
class Node:
    name: str
    nodeid: int
    ip: str
    maxcpu: int = 8
    maxmem: int = 32 * GiB
    online: bool = True
    booted: float = 0.0  # wall-clock boot time, for uptime and UPID pstart


@dataclass
class VM:
    vmid: int
    node: str
    conf: dict[str, Any]
    status: str = "stopped"
    started: float | None = None  # monotonic time of the last (re)start, for uptime
    pool: str | None = None

    @property
    def name(self) -> str | None:
        return self.conf.get("name")

    @property
    def template(self) -> bool:
        return bool(self.conf.get("template"))

    @property
    def lock(self) -> str | None:
        return self.conf.get("lock")

    @property
    def tags(self) -> str | None:
        return self.conf.get("tags")

    @property
    def maxmem(self) -> int:
        raw = str(self.conf.get("memory", "512"))
        m = re.search(r"(?:^|current=)(\d+)", raw)
        return int(m.group(1)) * MiB if m else 512 * MiB

    @property
    def cores(self) -> int:
        return int(self.conf.get("cores", 1))

    @property
    def cpus(self) -> int:
        return int(self.conf.get("cores", 1)) * int(self.conf.get("sockets", 1))

    def disks(self) -> list[tuple[str, str, int]]:
        """(drive key, volid, size) of every disk that is a volume (cdroms and `none` left out)."""
        out = []
        for key in sorted(self.conf):
            if not DRIVE_RE.match(key):
                continue
            value = str(self.conf[key])
            parts = value.split(",")
            volid = parts[0]
            opts = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            if volid in ("none", "cdrom") or opts.get("media") == "cdrom" or ":" not in volid:
                continue
            out.append((key, volid, parse_size(opts.get("size", "0"))))
        return out

    @property
    def storage(self) -> str | None:
        disks = self.disks()
        return disks[0][1].split(":", 1)[0] if disks else None

    @property
    def maxdisk(self) -> int:
        disks = self.disks()
        return disks[0][2] if disks else 0


def render_conf(conf: dict[str, Any]) -> str:
    """The config file text: description as leading comments, then sorted `key: value` lines."""
    lines = []
    if conf.get("description"):
        lines += ["#" + line for line in str(conf["description"]).split("\n")]
    lines += [f"{k}: {conf[k]}" for k in sorted(conf) if k != "description"]
    return "\n".join(lines) + "\n"


def conf_digest(conf: dict[str, Any]) -> str:
    # PVE's digest is the SHA1 of the file contents: it changes whenever the content does.
    return hashlib.sha1(render_conf(conf).encode()).hexdigest()


def volume_name(store_type: str, vmid: int, base: bool, fmt: str = "qcow2") -> str:
    prefix = "base" if base else "vm"
    if store_type == "dir":
        return f"{vmid}/{prefix}-{vmid}-disk-0.{fmt}"
    return f"{prefix}-{vmid}-disk-0"


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str  # user@realm!tokenid
    pid: int
    pstart: int
    starttime: int
    start: float  # monotonic
    end: float  # monotonic: when it stops
    seq: int
    lines: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None  # decided when created (failed check, lock timeout)
    finish: Callable[[Task], str | None] | None = None  # the effect at the end; returns an error text
    cleanup: Callable[[], None] | None = None  # runs when the task fails
    exitstatus: str | None = None
    endtime: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.exitstatus is None

    def log(self, at: float, text: str) -> None:
        self.lines.append((at, text))


def make_upid(node: str, pid: int, pstart: int, starttime: int, type_: str, id_: str, user: str) -> str:
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type_}:{id_}:{user}:"


# PVE::Tools::upid_decode
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):"
    r"([^:\s]+):([^:\s]*):([^:\s]+):$"
)


@dataclass
class SimConfig:
    durations: dict[str, float] = field(default_factory=lambda: dict(DURATION_DEFAULTS))
    storage_concurrency: int = 4
    lock_wait: float = 1.0
    auth_fail_delay: float = 3.0
    storages: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(STORAGE_DEFAULTS))
    pools: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "durations": dict(self.durations),
            "storage_concurrency": self.storage_concurrency,
            "lock_wait": self.lock_wait,
            "auth_fail_delay": self.auth_fail_delay,
            "storages": copy.deepcopy(self.storages),
            "pools": list(self.pools),
        }


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    error_every: int = 0  # exact plan: every n-th request fails (sandbox/faults.py)
    clone_lock_timeouts: list[int] = field(default_factory=list)  # these clones (1 = the next) meet a lock timeout
    # Lost answers: the request is applied, then the connection closes before the answer.
    lost_clone_responses: list[int] = field(default_factory=list)  # these clone requests (1 = the next)
    lose_every: int = 0  # every n-th write request (POST, PUT, DELETE)
    drop_rate: float = 0.0
    down_nodes: list[str] = field(default_factory=list)
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "error_rate": self.error_rate,
            "error_every": self.error_every,
            "clone_lock_timeouts": list(self.clone_lock_timeouts),
            "lost_clone_responses": list(self.lost_clone_responses),
            "lose_every": self.lose_every,
            "drop_rate": self.drop_rate,
            "down_nodes": list(self.down_nodes),
            "seed": self.seed,
        }
