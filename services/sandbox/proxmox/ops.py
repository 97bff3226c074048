"""The calls that change the cluster: clone, power actions, destroy, migrate, config update.

Each mirrors qemu-server's split between early checks in the API call (a synchronous 500 / 400) and checks
inside the forked worker (a task that ends with an error). Called with the state lock held.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .errors import ApiError, fail, param_error
from .model import VM, Task, human_size
from .schemas import is_vm_option
from .state import ClusterState, random_mac
from .validation import split_list
from .views import vm_on

ROOT_ONLY = "Only root may use this option."
ROOT_ONLY_OPTIONS = ("args", "hookscript", "lock")  # qemu-server: "only root can set '<opt>' config"


def _root_only(params: dict[str, Any], *names: str) -> None:
    # API tokens never count as root@pam, so these options are refused whenever they are set
    for name in names:
        if params.get(name):
            raise param_error({name: ROOT_ONLY})


def _locked(vm: VM) -> str:
    return f"VM is locked ({vm.lock})"


def _stamp(state: ClusterState, at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.wall(at)))


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _shared(state: ClusterState, store: str) -> bool:
    return bool(state.config.storages.get(store, {}).get("shared"))


def _store_type(state: ClusterState, store: str) -> str:
    return str(state.config.storages.get(store, {}).get("type", "lvmthin"))


def _lv_line(state: ClusterState, volid: str, verb: str) -> str | None:
    store, volname = volid.split(":", 1)
    if _store_type(state, store) not in ("lvmthin", "lvm"):
        return None
    return f'  Logical volume "{volname.split("/")[-1]}" {verb}.'


# ---- clone ------------------------------------------------------------------------------------------------------
def _can_link(state: ClusterState, src: VM, volid: str) -> bool:
    """Only base volumes of templates can be linked-cloned (and on `dir` storage only qcow2 ones)."""
    store, volname = volid.split(":", 1)
    if not src.template or "base-" not in volname.split("/")[-1]:
        return False
    return _store_type(state, store) != "dir" or volname.endswith(".qcow2")


def _clone_volid(state: ClusterState, volid: str, newid: int, index: int, full: bool, storage: str | None,
                 fmt: str | None) -> str:
    store, volname = volid.split(":", 1)
    if not full:
        if _store_type(state, store) == "dir":
            return f"{store}:{volname}/{newid}/vm-{newid}-disk-{index}.qcow2"
        return f"{store}:{volname}/vm-{newid}-disk-{index}"
    dest = storage or store
    if _store_type(state, dest) == "dir":
        ext = fmt or (volname.rsplit(".", 1)[-1] if "." in volname else "raw")
        return f"{dest}:{newid}/vm-{newid}-disk-{index}.{ext}"
    return f"{dest}:vm-{newid}-disk-{index}"


def clone(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    cfg = state.config
    newid: int = p["newid"]
    target = p.get("target")
    if target in (node, "localhost"):
        target = None
    storage, fmt, pool = p.get("storage"), p.get("format"), p.get("pool")

    # the order of qemu-server's clone_vm $load_and_check
    if pool is not None and pool not in cfg.pools:
        raise ApiError(403, f"Permission check failed (pool '{pool}' does not exist)\n")
    if target is not None and target not in state.nodes:
        raise fail(f"no such cluster node '{target}'")
    if storage is not None:
        if storage not in cfg.storages:
            raise fail(f"storage '{storage}' does not exist")
        if target is not None and not _shared(state, storage):
            raise fail(f"can't clone to non-shared storage '{storage}'")
    if not state.quorate():
        raise fail("cluster not ready - no quorum?")
    src = vm_on(state, node, vmid)
    if src.lock:
        raise fail(_locked(src))
    if p.get("snapname"):
        raise fail(f"snapshot '{p['snapname']}' does not exist")
    full = (not src.template) if p.get("full") is None else bool(p["full"])
    if storage is not None and not full:
        raise fail("parameter 'storage' not allowed for linked clones")
    if fmt is not None and not full:
        raise fail("parameter 'format' not allowed for linked clones")
    disks = src.disks()
    shared_vm = all(_shared(state, volid.split(":", 1)[0]) for _, volid, _ in disks)
    if storage is not None and not _shared(state, storage):
        shared_vm = False
    if target is not None and not shared_vm:
        raise fail(f"can't clone VM to node '{target}' (VM uses local storage)")
    # config files live in one cluster-wide filesystem (pmxcfs): a VMID is taken whatever node holds it
    if newid in state.vms:
        raise fail(f"unable to create VM {newid}: config file already exists")
    if not full:
        for drive, volid, _ in disks:
            if not _can_link(state, src, volid):
                raise fail(f"Linked clone feature is not supported for '{volid}' ({drive})")

    # ---- the worker: flock on the source (exclusive if it runs), then the storage lock while allocating
    dest_store = storage or (disks[0][1].split(":", 1)[0] if disks else None)
    storage_key = None
    if dest_store is not None:
        storage_key = dest_store if _shared(state, dest_store) else f"{node}/{dest_store}"
    active = [t for t in state.active_tasks() if t.type == "qmclone" and t.error is None]
    exclusive = src.status == "running"
    error, write_config = None, True
    if any(t.meta.get("source") == vmid and (exclusive or t.meta.get("exclusive")) for t in active):
        error, write_config = f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout", False
    elif storage_key and (state.planned_clone_lock_timeout() or sum(
            t.meta.get("storage_key") == storage_key for t in active) >= cfg.storage_concurrency):
        if _shared(state, dest_store or ""):
            error = f"clone failed: cfs-lock 'storage-{dest_store}' error: got lock request timeout"
        else:
            error = f"clone failed: can't lock file '/var/lock/pve-manager/pve-storage-{dest_store}' - got timeout"
    duration = cfg.lock_wait if error else cfg.durations["full_clone" if full else "linked_clone"]
    task = state.start_task(node, "qmclone", str(vmid), user, duration, error=error,
                            meta={"source": vmid, "exclusive": exclusive, "storage_key": storage_key,
                                  "newid": newid})
    if not write_config:
        return task.upid

    newconf = _clone_conf(state, src, newid, p, full, storage, fmt)
    new_vm = VM(vmid=newid, node=node, conf=newconf)
    state.vms[newid] = new_vm
    _clone_log(state, task, src, newid, full, storage, fmt, doomed=error is not None)

    def finish(t: Task) -> str | None:
        if state.vms.get(newid) is not new_vm:
            return f"clone failed: unable to find configuration file for VM {newid} - no such machine"
        new_vm.conf.pop("lock", None)
        if target is not None:
            new_vm.node = target  # the config is moved to the target node at the very end
        if pool is not None:
            new_vm.pool = pool
        return None

    def cleanup() -> None:
        if state.vms.get(newid) is new_vm:
            del state.vms[newid]

    task.finish, task.cleanup = finish, cleanup
    return task.upid


def _clone_conf(state: ClusterState, src: VM, newid: int, p: dict[str, Any], full: bool, storage: str | None,
                fmt: str | None) -> dict[str, Any]:
    conf: dict[str, Any] = {}
    index = 0
    disk_keys = {d[0]: d[1] for d in src.disks()}
    for key, value in src.conf.items():
        if key in ("template", "lock") or key.startswith("unused"):
            continue
        if key.startswith("net") and key[3:].isdigit():
            parts = str(value).split(",")
            model = parts[0].split("=", 1)[0]
            value = ",".join([f"{model}={random_mac(state.ids)}", *parts[1:]])
        elif key in disk_keys:
            rest = str(value).split(",", 1)[1:]
            value = ",".join([_clone_volid(state, disk_keys[key], newid, index, full, storage, fmt), *rest])
            index += 1
        conf[key] = value
    conf["smbios1"] = f"uuid={uuid.UUID(int=state.ids.getrandbits(128), version=4)}"
    if "vmgenid" in conf:
        conf["vmgenid"] = str(uuid.UUID(int=state.ids.getrandbits(128), version=4))
    conf["name"] = p.get("name") or f"Copy-of-VM-{src.name or src.vmid}"
    if p.get("description"):
        conf["description"] = p["description"]
    conf["lock"] = "clone"
    return conf


def _clone_log(state: ClusterState, task: Task, src: VM, newid: int, full: bool, storage: str | None,
               fmt: str | None, doomed: bool) -> None:
    now, span = task.start, task.end - task.start
    for index, (drive, volid, size) in enumerate(src.disks()):
        task.log(now, f"create {'full' if full else 'linked'} clone of drive {drive} ({volid})")
        if doomed:
            return  # the storage lock times out before the volume is allocated
        line = _lv_line(state, _clone_volid(state, volid, newid, index, full, storage, fmt), "created")
        if line:
            task.log(now, line)
        if full:
            for step in range(5):
                done = size * step / 4
                task.log(now + span * step / 4,
                         f"transferred {human_size(done)} of {human_size(size)} ({step * 25:.2f}%)")


# ---- power ------------------------------------------------------------------------------------------------------
def _same(state: ClusterState, vm: VM) -> bool:
    return state.vms.get(vm.vmid) is vm


def start(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    _root_only(p, "skiplock", "migratedfrom", "stateuri", "migration_type", "migration_network", "targetstorage",
               "force-cpu")
    vm = vm_on(state, node, vmid)

    def check() -> str | None:  # QemuServer::vm_start, under the config flock
        if vm.template:
            return "you can't start a vm if it's a template"
        if vm.lock and vm.lock != "suspended":
            return _locked(vm)
        if vm.status == "running":
            return f"VM {vmid} already running"
        return None

    error = check()
    task = state.start_task(node, "qmstart", str(vmid), user, 0 if error else state.config.durations["start"],
                            error=error)

    def finish(t: Task) -> str | None:
        if not _same(state, vm):
            return f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        err = check()
        if err:
            return err
        vm.conf.pop("lock", None)  # resuming drops a 'suspended' lock
        vm.status, vm.started = "running", t.end
        return None

    task.finish = finish
    return task.upid


def _stop_like(state: ClusterState, user: str, node: str, vmid: int, kind: str) -> str:
    vm = vm_on(state, node, vmid)
    running = vm.status == "running"
    # already stopped: nothing to do, the task ends OK; running and locked: refused inside the worker
    error = _locked(vm) if running and vm.lock else None
    duration = state.config.durations[kind] if running and not error else 0
    task = state.start_task(node, "qmstop" if kind == "stop" else "qmshutdown", str(vmid), user, duration,
                            error=error)

    def finish(t: Task) -> str | None:
        if _same(state, vm) and vm.status == "running":
            vm.status, vm.started = "stopped", None
        return None

    task.finish = finish
    return task.upid


def stop(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    _root_only(p, "skiplock", "migratedfrom")
    return _stop_like(state, user, node, vmid, "stop")


def shutdown(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    _root_only(p, "skiplock")
    return _stop_like(state, user, node, vmid, "shutdown")


def _restart_like(state: ClusterState, user: str, node: str, vmid: int, kind: str) -> str:
    vm = vm_on(state, node, vmid)
    if vm.status != "running":
        raise fail(f"VM {vmid} not running")
    error = _locked(vm) if vm.lock else None
    task = state.start_task(node, "qmreset" if kind == "reset" else "qmreboot", str(vmid), user,
                            0 if error else state.config.durations[kind], error=error)

    def finish(t: Task) -> str | None:
        if not _same(state, vm) or vm.status != "running":
            return f"VM {vmid} not running"
        vm.started = t.end  # a fresh boot: uptime starts over
        return None

    task.finish = finish
    return task.upid


def reset(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    _root_only(p, "skiplock")
    return _restart_like(state, user, node, vmid, "reset")


def reboot(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    return _restart_like(state, user, node, vmid, "reboot")


# ---- destroy ----------------------------------------------------------------------------------------------------
def destroy(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    _root_only(p, "skiplock")
    vm = vm_on(state, node, vmid)
    if vm.conf.get("protection"):
        raise fail(f"can't remove VM {vmid} - protection mode enabled")
    if vm.status == "running":
        raise fail(f"VM {vmid} is running - destroy failed")
    error = _locked(vm) if vm.lock else None
    task = state.start_task(node, "qmdestroy", str(vmid), user, 0 if error else state.config.durations["destroy"],
                            error=error)

    def finish(t: Task) -> str | None:
        if not _same(state, vm):
            return f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
        if vm.lock:
            return _locked(vm)
        if vm.status == "running":
            return f"VM {vmid} is running - destroy failed"
        for _, volid, _ in vm.disks():
            line = _lv_line(state, volid, "successfully removed")
            if line:
                t.log(t.end, line)
        del state.vms[vmid]
        return None

    task.finish = finish
    return task.upid


# ---- migrate ----------------------------------------------------------------------------------------------------
def migrate(state: ClusterState, user: str, node: str, vmid: int, p: dict[str, Any]) -> str:
    target: str = p["target"]
    if target == node:
        raise param_error({"target": "target is local node."})
    if not state.quorate():
        raise fail("cluster not ready - no quorum?")
    if target not in state.nodes:
        raise fail(f"no such cluster node '{target}'")
    _root_only(p, "force", "migration_type", "migration_network")
    vm = vm_on(state, node, vmid)
    if vm.lock:
        raise fail(_locked(vm))
    online = bool(p.get("online"))
    if vm.status == "running":
        if not online:
            raise fail("can't migrate running VM without --online")
    else:
        online = False  # "VM isn't running. Doing offline migration instead." (a warning, not an error)

    local = [volid for _, volid, _ in vm.disks() if not _shared(state, volid.split(":", 1)[0])]
    duration = state.config.durations["migrate"]
    blocked = bool(online and local and not p.get("with-local-disks"))
    unreachable = not state.node_online(target)
    task = state.start_task(node, "qmigrate", str(vmid), user, 0 if blocked else duration,
                            error="migration aborted" if blocked or unreachable else None)
    vm.conf["lock"] = "migrate"
    now = task.start
    ip = state.nodes[target].ip
    task.log(now, f"{_stamp(state, now)} starting migration of VM {vmid} to node '{target}' ({ip})")
    for volid in local:
        task.log(now, f"{_stamp(state, now)} found local disk '{volid}' (attached)")
    if unreachable and not blocked:  # phase 0 cannot reach the target over ssh
        task.log(task.end, f"{_stamp(state, task.end)} ERROR: migration aborted (duration {_hms(duration)}): "
                           "Can't connect to destination address using public key")
    elif blocked:
        for volid in local:
            task.log(now, f"{_stamp(state, now)} can't migrate local disk '{volid}': can't live migrate attached "
                          "local disks without with-local-disks option")
        task.log(now, f"{_stamp(state, now)} ERROR: Problem found while scanning volumes - can't migrate VM - "
                      "check log")
        task.log(now, f"{_stamp(state, now)} aborting phase 1 - cleanup resources")
        task.log(now, f"{_stamp(state, now)} ERROR: migration aborted (duration 00:00:00): can't migrate VM - "
                      "check log")
    else:
        if online:
            task.log(now, f"{_stamp(state, now)} starting VM {vmid} on remote node '{target}'")
            task.log(now, f"{_stamp(state, now)} start remote tunnel")
            task.log(now, f"{_stamp(state, now)} starting online/live migration on "
                          f"unix:/run/qemu-server/{vmid}.migrate")
            mid = now + duration / 2
            task.log(mid, f"{_stamp(state, mid)} migration active, transferred {human_size(vm.maxmem / 2)} of "
                          f"{human_size(vm.maxmem)} VM-state")
        elif local:
            task.log(now, f"{_stamp(state, now)} copying local disk images")

    def finish(t: Task) -> str | None:
        if vm.conf.get("lock") == "migrate":
            del vm.conf["lock"]
        if not _same(state, vm):
            return "migration aborted"
        if not state.node_online(target):
            t.log(t.end, f"{_stamp(state, t.end)} ERROR: migration aborted (duration {_hms(t.end - t.start)}): "
                         "Can't connect to destination address using public key")
            return "migration aborted"
        if online:
            t.log(t.end, f"{_stamp(state, t.end)} migration status: completed")
        vm.node = target
        t.log(t.end, f"{_stamp(state, t.end)} migration finished successfully (duration {_hms(t.end - t.start)})")
        return None

    def cleanup() -> None:
        if vm.conf.get("lock") == "migrate":
            del vm.conf["lock"]

    task.finish, task.cleanup = finish, cleanup
    return task.upid


# ---- config -----------------------------------------------------------------------------------------------------
def _normalize_tags(text: str) -> str:
    seen: list[str] = []
    for tag in split_list(text):
        if tag.lower() not in (s.lower() for s in seen):
            seen.append(tag)
    return ";".join(seen)


def update_config(state: ClusterState, node: str, vmid: int, p: dict[str, Any]) -> None:
    """PUT …/config: synchronous; the order of qemu-server's update_vm_api checks."""
    _root_only(p, "skiplock")
    delete_str, revert_str, digest = p.get("delete"), p.get("revert"), p.get("digest")
    options = {k: v for k, v in p.items()
               if k not in ("node", "vmid", "delete", "revert", "digest", "skiplock", "force")}
    if not delete_str and not revert_str and not options:
        raise fail("no options specified")
    for opt in ROOT_ONLY_OPTIONS:
        if opt in options:
            raise fail(f"only root can set '{opt}' config")
    deletes = []
    for opt in split_list(delete_str or ""):
        opt = "ide2" if opt == "cdrom" else opt
        if opt in options:
            raise param_error({"delete": f"you can't use '-{opt}' and -delete {opt}' at the same time"})
        if not is_vm_option(opt):
            raise param_error({"delete": f"unknown option '{opt}'"})
        deletes.append(opt)
    vm = vm_on(state, node, vmid)
    if digest and digest != state.digest(vm):
        raise fail("checksum mismatch (file change by other user?)")
    if vm.lock:
        raise fail(_locked(vm))
    for opt in deletes:
        vm.conf.pop(opt, None)
    for key, value in options.items():
        if key == "cdrom":
            key, value = "ide2", f"{value},media=cdrom"
        if key == "tags":
            value = _normalize_tags(str(value))
            if not value:
                vm.conf.pop("tags", None)
                continue
        vm.conf[key] = value
    # changes to a running VM apply at once here; PVE would keep non-hotpluggable ones as pending
