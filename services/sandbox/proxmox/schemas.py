"""Parameter schemas of the simulated endpoints (a subset of the PVE 9 API schema, path parameters included)."""

from __future__ import annotations

import re

from .validation import Prop, Schema, req

NODE = req("string", format="pve-node")
VMID = req("integer", format="pve-vmid", minimum=100, maximum=999999999)
OPT_VMID = Prop("integer", format="pve-vmid", minimum=100, maximum=999999999)
OPT_NODE = Prop("string", format="pve-node")
BOOL = Prop("boolean")
SKIPLOCK = Prop("boolean")
TIMEOUT = Prop("integer", minimum=0)
BWLIMIT = Prop("integer", minimum=0)

EMPTY = Schema({})
NODE_ONLY = Schema({"node": NODE})
VM_PATH = Schema({"node": NODE, "vmid": VMID})

CLUSTER_RESOURCES = Schema({"type": Prop(enum=("vm", "storage", "node", "sdn"))})
NEXTID = Schema({"vmid": OPT_VMID})
QEMU_LIST = Schema({"node": NODE, "full": BOOL})
VM_CONFIG_GET = VM_PATH.extend(current=BOOL, snapshot=Prop(format="pve-snapshot-name", max_length=40))

CLONE = VM_PATH.extend(
    newid=VMID,
    name=Prop(format="dns-name"),
    description=Prop(),
    pool=Prop(format="pve-poolid"),
    snapname=Prop(format="pve-snapshot-name", max_length=40),
    storage=Prop(format="pve-storage-id"),
    format=Prop(enum=("raw", "qcow2", "vmdk")),
    full=BOOL,
    target=OPT_NODE,
    bwlimit=BWLIMIT,
)
START = VM_PATH.extend(
    skiplock=SKIPLOCK, timeout=TIMEOUT, machine=Prop(), stateuri=Prop(max_length=128), migratedfrom=OPT_NODE,
    migration_type=Prop(enum=("secure", "insecure")), migration_network=Prop(), targetstorage=Prop(),
    **{"force-cpu": Prop()},
)
STOP = VM_PATH.extend(
    skiplock=SKIPLOCK, timeout=TIMEOUT, keepActive=BOOL, migratedfrom=OPT_NODE, **{"overrule-shutdown": BOOL},
)
RESET = VM_PATH.extend(skiplock=SKIPLOCK)
SHUTDOWN = VM_PATH.extend(skiplock=SKIPLOCK, timeout=TIMEOUT, forceStop=BOOL, keepActive=BOOL)
REBOOT = VM_PATH.extend(timeout=TIMEOUT)
DESTROY = VM_PATH.extend(skiplock=SKIPLOCK, purge=BOOL, **{"destroy-unreferenced-disks": BOOL})
MIGRATE_GET = VM_PATH.extend(target=OPT_NODE)
MIGRATE_POST = VM_PATH.extend(
    target=NODE, online=BOOL, force=BOOL, targetstorage=Prop(), bwlimit=BWLIMIT,
    migration_type=Prop(enum=("secure", "insecure")), migration_network=Prop(),
    **{"with-local-disks": BOOL, "with-conntrack-state": BOOL},
)
TASK = Schema({"node": NODE, "upid": req("string")})
NODE_TASKS = NODE_ONLY.extend(
    start=Prop("integer", minimum=0), limit=Prop("integer", minimum=0), userfilter=Prop(), typefilter=Prop(),
    vmid=OPT_VMID, errors=BOOL, source=Prop(enum=("archive", "active", "all")), since=Prop("integer"),
    until=Prop("integer"), statusfilter=Prop(format="pve-task-status-type-list"),
)
TASK_LOG = TASK.extend(start=Prop("integer", minimum=0), limit=Prop("integer", minimum=0), download=BOOL)
RRDDATA = Schema({
    "node": NODE,
    "timeframe": req("string", enum=("hour", "day", "week", "month", "year")),
    "cf": Prop(enum=("AVERAGE", "MAX")),
})
TICKET = Schema({
    "username": req("string", max_length=64), "password": req("string"), "realm": Prop(max_length=32),
    "otp": Prop(), "path": Prop(max_length=64), "privs": Prop(max_length=64), "new-format": BOOL,
    "tfa-challenge": Prop(),
})

# VM options accepted by PUT …/config (qemu-server's option schema, the common part)
VM_OPTIONS: dict[str, Prop] = {
    "acpi": BOOL, "agent": Prop(), "arch": Prop(enum=("x86_64", "aarch64")), "args": Prop(), "audio0": Prop(),
    "autostart": BOOL, "balloon": Prop("integer", minimum=0), "bios": Prop(enum=("seabios", "ovmf")),
    "boot": Prop(), "bootdisk": Prop(), "cdrom": Prop(), "cicustom": Prop(), "cipassword": Prop(),
    "citype": Prop(enum=("configdrive2", "nocloud", "opennebula")), "ciupgrade": BOOL, "ciuser": Prop(),
    "cores": Prop("integer", minimum=1, maximum=1024), "cpu": Prop(),
    "cpulimit": Prop("number", minimum=0, maximum=128),
    "cpuunits": Prop("integer", minimum=1, maximum=262144), "description": Prop(max_length=8192),
    "efidisk0": Prop(), "freeze": BOOL, "hookscript": Prop(), "hotplug": Prop(), "hugepages": Prop(),
    "keyboard": Prop(), "kvm": BOOL, "localtime": BOOL, "lock": Prop(enum=(
        "backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspending", "suspended")),
    "machine": Prop(), "memory": Prop(), "migrate_downtime": Prop("number", minimum=0),
    "migrate_speed": Prop("integer", minimum=0), "name": Prop(format="dns-name"), "nameserver": Prop(),
    "numa": BOOL, "onboot": BOOL, "ostype": Prop(enum=(
        "other", "wxp", "w2k", "w2k3", "w2k8", "wvista", "win7", "win8", "win10", "win11", "l24", "l26", "solaris")),
    "protection": BOOL, "reboot": BOOL, "rng0": Prop(), "scsihw": Prop(enum=(
        "lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi")),
    "searchdomain": Prop(), "shares": Prop("integer", minimum=0, maximum=50000), "smbios1": Prop(max_length=512),
    "sockets": Prop("integer", minimum=1), "sshkeys": Prop(), "startdate": Prop(), "startup": Prop(),
    "tablet": BOOL, "tags": Prop(format="pve-tag-list"), "template": BOOL, "tpmstate0": Prop(),
    "vcpus": Prop("integer", minimum=1), "vga": Prop(), "vmgenid": Prop(), "vmstatestorage": Prop(),
    "watchdog": Prop(),
}
VM_OPTION_PATTERNS: list[tuple[re.Pattern[str], Prop]] = [
    (re.compile(r"^(net|ipconfig)([0-9]|[12][0-9]|3[01])$"), Prop()),
    (re.compile(r"^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5]))$"), Prop()),
    (re.compile(r"^(serial|parallel)[0-3]$|^parallel[0-2]$"), Prop()),
    (re.compile(r"^(usb|hostpci)([0-9]|1[0-3])$|^unused\d+$|^numa[0-7]$"), Prop()),
]
VM_CONFIG_PUT = Schema(
    {**VM_PATH.props, **VM_OPTIONS, "delete": Prop(format="pve-configid-list"), "digest": Prop(max_length=40),
     "revert": Prop(format="pve-configid-list"), "skiplock": SKIPLOCK, "force": BOOL},
    VM_OPTION_PATTERNS,
)


def is_vm_option(name: str) -> bool:
    return name in VM_OPTIONS or any(p.match(name) for p, _ in VM_OPTION_PATTERNS)
