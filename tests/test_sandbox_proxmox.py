"""The Proxmox VE simulator, exercised through the real proxmoxer client over HTTPS."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from sandbox.proxmox import ClusterState, FakeClock, ProxmoxSimulator
from sandbox.proxmox.api import Api
from sandbox.proxmox.auth import TokenAuth

TOKEN = "6f1c9a52-7d4e-4b8a-9a51-2d3c4e5f6a7b"
DURATIONS = {"linked_clone": 0.4, "full_clone": 0.6, "start": 0.2, "stop": 0.2, "shutdown": 0.2, "reset": 0.1,
             "reboot": 0.2, "destroy": 0.2, "migrate": 0.3}
UPID_RE = re.compile(r"^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:qmclone:9000:openvle@pve!tasks:$")


@pytest.fixture(scope="module")
def sim() -> Iterator[ProxmoxSimulator]:
    simulator = ProxmoxSimulator(user="openvle@pve", token_name="tasks", token_value=TOKEN, auth_fail_delay=0,
                                 durations=DURATIONS, lock_wait=0.2)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def cluster(sim: ProxmoxSimulator) -> ClusterState:
    sim.state.reset()
    sim.state.seed_cluster()
    return sim.state


@pytest.fixture
def px(sim: ProxmoxSimulator) -> ProxmoxAPI:
    return ProxmoxAPI("127.0.0.1", port=sim.port, user="openvle@pve", token_name="tasks", token_value=TOKEN,
                      verify_ssl=sim.ca_path, timeout=10)


def wait(px: ProxmoxAPI, upid: str) -> dict:
    status = Tasks.blocking_status(px, upid, timeout=10, polling_interval=0.05)
    assert status is not None, f"task did not finish: {upid}"
    return status


def log_text(px: ProxmoxAPI, upid: str) -> list[str]:
    node = Tasks.decode_upid(upid)["node"]
    return [line["t"] for line in px.nodes(node).tasks(upid).log.get()]


def sync_error(call, *args, **kwargs) -> ResourceException:
    with pytest.raises(ResourceException) as info:
        call(*args, **kwargs)
    return info.value


def admin(sim: ProxmoxSimulator, method: str, path: str, json: dict | None = None) -> requests.Response:
    return requests.request(method, f"{sim.url}/_sandbox/{path}", json=json, verify=sim.ca_path, timeout=10)


# ---- wire, auth, parameter verification -------------------------------------------------------------------------
def test_wire_format_of_success(sim):
    resp = requests.get(f"{sim.url}/api2/json/version", verify=sim.ca_path, timeout=10,
                        headers={"Authorization": f"PVEAPIToken=openvle@pve!tasks={TOKEN}"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert resp.headers["Server"] == "pve-api-daemon/3.0"
    assert set(resp.json()["data"]) == {"version", "release", "repoid"}


def test_bad_token_is_401_authentication_failed(sim, px):
    bad = ProxmoxAPI("127.0.0.1", port=sim.port, user="openvle@pve", token_name="tasks", token_value="wrong",
                     verify_ssl=sim.ca_path, timeout=10)
    err = sync_error(bad.version.get)
    assert err.status_code == 401
    assert err.content == "Authentication failed!"

    resp = requests.get(f"{sim.url}/api2/json/version", verify=sim.ca_path, timeout=10)
    assert (resp.status_code, resp.reason, resp.content) == (401, "No ticket", b"")
    assert resp.headers["Connection"] == "close"

    resp = requests.post(f"{sim.url}/api2/json/access/ticket", data={"username": "root@pam", "password": "x"},
                         verify=sim.ca_path, timeout=10)
    assert (resp.status_code, resp.reason) == (401, "authentication failure")


def test_failed_auth_is_delayed(sim, cluster):
    cluster.configure(auth_fail_delay=0.3)
    started = time.monotonic()
    resp = requests.get(f"{sim.url}/api2/json/nodes", verify=sim.ca_path, timeout=10,
                        headers={"Authorization": "PVEAPIToken=openvle@pve!tasks=nope"})
    assert resp.status_code == 401
    assert time.monotonic() - started >= 0.3


def test_parameter_verification_errors(sim, px):
    clone = px.nodes("pve1").qemu(9000).clone
    err = sync_error(clone.post, newid=101, full=True)  # proxmoxer sends Python True as "True"
    assert (err.status_code, err.content) == (400, "Parameter verification failed.")
    assert err.errors == {"full": "type check ('boolean') failed - got 'True'"}

    assert sync_error(clone.post, name="x").errors == {"newid": "property is missing and it is not optional"}
    assert sync_error(clone.post, newid=42).errors == {
        "newid": "invalid format - value does not look like a valid VM ID\n"}
    assert sync_error(clone.post, newid="abc").errors == {"newid": "type check ('integer') failed - got 'abc'"}
    assert sync_error(clone.post, newid=101, colour="red").errors == {
        "colour": "property is not defined in schema and the schema does not allow additional properties"}
    assert sync_error(clone.post, newid=101, name="not_a_dns_name").errors == {
        "name": "invalid format - value does not look like a valid DNS name\n"}
    assert sync_error(clone.post, newid=101, format="iso").errors == {
        "format": "value 'iso' does not have a value in the enumeration 'raw, qcow2, vmdk'"}

    body = requests.post(f"{sim.url}/api2/json/nodes/pve1/qemu/9000/clone", data={"newid": "1"},
                         headers={"Authorization": f"PVEAPIToken=openvle@pve!tasks={TOKEN}"},
                         verify=sim.ca_path, timeout=10).json()
    assert body == {"data": None, "errors": {"newid": "invalid format - value does not look like a valid VM ID\n"},
                    "message": "Parameter verification failed.\n"}


def test_json_bodies_and_json_booleans_are_accepted(sim, px):
    resp = requests.post(f"{sim.url}/api2/json/nodes/pve1/qemu/9000/clone", json={"newid": 150, "full": True},
                         headers={"Authorization": f"PVEAPIToken=openvle@pve!tasks={TOKEN}"},
                         verify=sim.ca_path, timeout=10)
    assert resp.status_code == 200
    assert wait(px, resp.json()["data"])["exitstatus"] == "OK"
    assert px.nodes("pve1").qemu(150).config.get()["scsi0"].startswith("local-lvm:vm-150-disk-0,")


def test_unknown_method_is_501(px):
    err = sync_error(px.nodes("pve1").foo.get)
    assert (err.status_code, err.content) == (501, "Method 'GET /nodes/pve1/foo' not implemented")
    assert sync_error(px.nodes("pve1").qemu(9000).clone.get).status_code == 501


def test_rrddata_requires_a_timeframe(px):
    assert sync_error(px.nodes("pve1").rrddata.get).errors == {
        "timeframe": "property is missing and it is not optional"}
    assert "enumeration 'hour, day, week, month, year'" in sync_error(
        px.nodes("pve1").rrddata.get, timeframe="minute").errors["timeframe"]
    points = px.nodes("pve1").rrddata.get(timeframe="hour", cf="MAX")
    assert len(points) == 70 and {"time", "cpu", "maxcpu", "memused", "memtotal", "netin", "netout",
                                  "loadavg"} <= set(points[-1])


# ---- clone ------------------------------------------------------------------------------------------------------
def test_linked_clone_happy_path(px):
    upid = px.nodes("pve1").qemu(9000).clone.post(newid=101, name="lab-101")
    assert UPID_RE.match(upid)
    config = px.nodes("pve1").qemu(101).config.get()
    assert config["lock"] == "clone" and config["name"] == "lab-101"
    assert px.nodes("pve1").tasks(upid).status.get()["status"] == "running"

    status = wait(px, upid)
    assert status["exitstatus"] == "OK"
    assert (status["user"], status["tokenid"], status["type"], status["id"]) == ("openvle@pve", "tasks", "qmclone",
                                                                                  "9000")
    config = px.nodes("pve1").qemu(101).config.get()
    assert "lock" not in config and "template" not in config
    assert config["scsi0"].startswith("local-lvm:base-9000-disk-0/vm-101-disk-0,")
    assert log_text(px, upid)[0] == "create linked clone of drive scsi0 (local-lvm:base-9000-disk-0)"
    assert log_text(px, upid)[-1] == "TASK OK"
    assert px.nodes("pve1").qemu(9000).config.get().get("lock") is None  # the source gets no lock


def test_default_clone_name_and_full_clone_of_a_vm(px, cluster):
    cluster.add_vm(200, "pve1", "web", tags="lab;web")
    upid = px.nodes("pve1").qemu(200).clone.post(newid=201)
    assert wait(px, upid)["exitstatus"] == "OK"
    log = log_text(px, upid)
    assert log[0] == "create full clone of drive scsi0 (local-lvm:vm-200-disk-0)"
    assert "transferred 32.0 GiB of 32.0 GiB (100.00%)" in log
    config = px.nodes("pve1").qemu(201).config.get()
    assert (config["name"], config["tags"], config["memory"]) == ("Copy-of-VM-web", "lab;web", "2048")


def test_clone_to_another_node_needs_shared_storage(px, cluster):
    cluster.configure(storages={"ceph": {"type": "rbd", "shared": True}})
    cluster.add_vm(9001, "pve1", "shared-template", template=True, storage="ceph")
    upid = px.nodes("pve1").qemu(9001).clone.post(newid=120, target="pve2")
    # the config is written on the source node and moved to the target when the clone is done
    assert px.nodes("pve1").qemu(120).config.get()["lock"] == "clone"
    assert wait(px, upid)["exitstatus"] == "OK"
    config = px.nodes("pve2").qemu(120).config.get()
    assert "lock" not in config and config["scsi0"].startswith("ceph:base-9001-disk-0/vm-120-disk-0,")


def test_clone_sync_errors(px, cluster):
    cluster.add_vm(200, "pve1", "web")
    clone = px.nodes("pve1").qemu
    assert sync_error(clone(200).clone.post, newid=201, full=0).content == (
        "Linked clone feature is not supported for 'local-lvm:vm-200-disk-0' (scsi0)")
    assert sync_error(clone(9000).clone.post, newid=201, storage="local").content == (
        "parameter 'storage' not allowed for linked clones")
    assert sync_error(clone(9000).clone.post, newid=201, target="pve2").content == (
        "can't clone VM to node 'pve2' (VM uses local storage)")
    assert sync_error(clone(9000).clone.post, newid=201, target="pve9").content == "no such cluster node 'pve9'"
    assert sync_error(clone(555).clone.post, newid=201).content == (
        "Configuration file 'nodes/pve1/qemu-server/555.conf' does not exist")
    cluster.add_vm(300, "pve1", "busy", lock="backup")
    assert sync_error(clone(300).clone.post, newid=301).content == "VM is locked (backup)"


def test_nextid_reserves_nothing_and_taken_ids_are_refused(px):
    first, second = px.cluster.nextid.get(), px.cluster.nextid.get()
    assert first == second == "100"  # PVE sends the id as a JSON string
    wait(px, px.nodes("pve1").qemu(9000).clone.post(newid=int(first)))

    err = sync_error(px.nodes("pve1").qemu(9000).clone.post, newid=100)
    assert (err.status_code, err.content) == (500, "unable to create VM 100: config file already exists")
    assert px.cluster.nextid.get() == "101"
    assert sync_error(px.cluster.nextid.get, vmid=100).errors == {"vmid": "VM 100 already exists"}
    assert px.cluster.nextid.get(vmid=4242) == "4242"


def test_storage_lock_contention_fails_the_extra_clones(px, cluster):
    cluster.configure(storage_concurrency=2, lock_wait=0.5, durations={"linked_clone": 1.5})
    upids = {newid: px.nodes("pve1").qemu(9000).clone.post(newid=newid) for newid in (101, 102, 103, 104)}
    assert {v["vmid"]: v["lock"] for v in cluster.snapshot()["vms"] if v["vmid"] != 9000} == {
        101: "clone", 102: "clone", 103: "clone", 104: "clone"}

    results = {newid: wait(px, upid)["exitstatus"] for newid, upid in upids.items()}
    text = "clone failed: can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout"
    assert results == {101: "OK", 102: "OK", 103: text, 104: text}
    assert log_text(px, upids[103])[-1] == f"TASK ERROR: {text}"
    assert [vm["vmid"] for vm in px.nodes("pve1").qemu.get()] == [101, 102, 9000]


# ---- power, destroy ---------------------------------------------------------------------------------------------
def test_start_stop_rows(px, cluster):
    cluster.add_vm(101, "pve1", "vm1")
    qemu = px.nodes("pve1").qemu
    assert wait(px, qemu(101).status.start.post())["exitstatus"] == "OK"
    assert qemu(101).status.current.get()["status"] == "running"
    assert wait(px, qemu(101).status.start.post())["exitstatus"] == "VM 101 already running"
    assert wait(px, qemu(9000).status.start.post())["exitstatus"] == "you can't start a vm if it's a template"

    assert wait(px, qemu(101).status.stop.post())["exitstatus"] == "OK"
    assert qemu(101).status.current.get()["status"] == "stopped"
    assert wait(px, qemu(101).status.stop.post())["exitstatus"] == "OK"  # already stopped: a no-op
    assert wait(px, qemu(101).status.shutdown.post())["exitstatus"] == "OK"

    cluster.add_vm(102, "pve1", "vm2", lock="backup")
    upid = qemu(102).status.start.post()
    assert wait(px, upid)["exitstatus"] == "VM is locked (backup)"
    assert log_text(px, upid)[-1] == "TASK ERROR: VM is locked (backup)"
    cluster.add_vm(103, "pve1", "vm3", status="running", lock="backup")
    assert wait(px, qemu(103).status.stop.post())["exitstatus"] == "VM is locked (backup)"
    assert sync_error(qemu(101).status.start.post, skiplock=1).errors == {"skiplock": "Only root may use this option."}


def test_reset_reboot_need_a_running_vm(px, cluster):
    cluster.add_vm(101, "pve1", "vm1")
    qemu = px.nodes("pve1").qemu
    err = sync_error(qemu(101).status.reset.post)
    assert (err.status_code, err.content) == (500, "VM 101 not running")
    assert sync_error(qemu(101).status.reboot.post).content == "VM 101 not running"
    cluster.add_vm(102, "pve1", "vm2", status="running")
    assert wait(px, qemu(102).status.reset.post())["exitstatus"] == "OK"
    assert wait(px, qemu(102).status.reboot.post())["exitstatus"] == "OK"


def test_delete_rows(px, cluster):
    qemu = px.nodes("pve1").qemu
    cluster.add_vm(101, "pve1", "vm1", status="running")
    assert sync_error(qemu(101).delete).content == "VM 101 is running - destroy failed"
    cluster.add_vm(102, "pve1", "vm2", protection=True)
    assert sync_error(qemu(102).delete).content == "can't remove VM 102 - protection mode enabled"
    cluster.add_vm(103, "pve1", "vm3", lock="clone")
    assert wait(px, qemu(103).delete())["exitstatus"] == "VM is locked (clone)"

    cluster.add_vm(104, "pve1", "vm4")
    upid = qemu(104).delete(purge=1, **{"destroy-unreferenced-disks": 1})
    assert wait(px, upid)["exitstatus"] == "OK"
    assert log_text(px, upid) == ['  Logical volume "vm-104-disk-0" successfully removed.', "TASK OK"]
    assert sync_error(qemu(104).config.get).content == (
        "Configuration file 'nodes/pve1/qemu-server/104.conf' does not exist")


# ---- migrate ----------------------------------------------------------------------------------------------------
def test_migrate_rows(px, cluster):
    qemu = px.nodes("pve1").qemu
    cluster.add_vm(101, "pve1", "vm1", status="running")
    assert sync_error(qemu(101).migrate.post, target="pve2").content == "can't migrate running VM without --online"
    assert sync_error(qemu(101).migrate.post, target="pve9").content == "no such cluster node 'pve9'"
    err = sync_error(qemu(101).migrate.post, target="pve1")
    assert (err.status_code, err.errors) == (400, {"target": "target is local node."})

    pre = qemu(101).migrate.get(target="pve2")
    assert pre["running"] == 1 and pre["allowed_nodes"] == ["pve2", "pve3"]
    assert pre["local_disks"][0]["volid"] == "local-lvm:vm-101-disk-0"
    assert pre["not_allowed_nodes"] == {} and pre["local_resources"] == []

    blocked = qemu(101).migrate.post(target="pve2", online=1)
    assert wait(px, blocked)["exitstatus"] == "migration aborted"
    assert any("can't live migrate attached local disks without with-local-disks option" in line
               for line in log_text(px, blocked))

    upid = qemu(101).migrate.post(target="pve2", online=1, **{"with-local-disks": 1})
    assert qemu(101).config.get()["lock"] == "migrate"
    assert wait(px, upid)["exitstatus"] == "OK"
    log = log_text(px, upid)
    assert log[0].endswith("starting migration of VM 101 to node 'pve2' (10.0.0.2)")
    assert re.search(r"migration finished successfully \(duration \d\d:\d\d:\d\d\)$", log[-2])
    moved = px.nodes("pve2").qemu(101).status.current.get()
    assert moved["status"] == "running" and "lock" not in moved
    assert [vm["vmid"] for vm in qemu.get()] == [9000]


def test_config_update(px, cluster):
    cluster.add_vm(101, "pve1", "vm1")
    config = px.nodes("pve1").qemu(101).config
    before = config.get()["digest"]
    assert config.put(name="renamed", tags="a;b", description="hello", cores=4) is None
    after = config.get()
    assert (after["name"], after["tags"], after["cores"]) == ("renamed", "a;b", 4)
    assert after["digest"] != before
    assert sync_error(config.put, name="x", digest=before).content == "checksum mismatch (file change by other user?)"
    assert sync_error(config.put).content == "no options specified"
    config.put(delete="description", digest=after["digest"])
    assert "description" not in config.get()
    cluster.add_vm(102, "pve1", "vm2", lock="clone")
    assert sync_error(px.nodes("pve1").qemu(102).config.put, name="y").content == "VM is locked (clone)"


# ---- tasks, nodes, resources ------------------------------------------------------------------------------------
def test_task_log_paging_and_unknown_tasks(sim, px, cluster):
    cluster.add_vm(200, "pve1", "web")
    upid = px.nodes("pve1").qemu(200).clone.post(newid=201)
    wait(px, upid)
    resp = requests.get(f"{sim.url}/api2/json/nodes/pve1/tasks/{upid}/log", params={"start": 1, "limit": 2},
                        headers={"Authorization": f"PVEAPIToken=openvle@pve!tasks={TOKEN}"},
                        verify=sim.ca_path, timeout=10).json()
    assert [line["n"] for line in resp["data"]] == [2, 3] and resp["total"] == 8
    tasks = px.nodes("pve1").tasks
    assert sync_error(tasks("garbage").status.get).errors == {"upid": "unable to parse worker upid"}
    assert sync_error(tasks(upid.replace("qmclone", "qmstart")).status.get).errors == {"upid": "no such task"}
    assert sync_error(px.nodes("pve2").tasks(upid).status.get).errors == {"upid": "no such task"}


def test_nodes_resources_and_load(px, cluster):
    cluster.add_vm(101, "pve1", "vm1", status="running", maxmem=4 * 1024**3, cores=4)
    nodes = {n["node"]: n for n in px.nodes.get()}
    assert nodes["pve1"]["mem"] > nodes["pve2"]["mem"] and nodes["pve1"]["status"] == "online"
    status = px.nodes("pve1").status.get()
    assert status["memory"]["used"] >= 4 * 1024**3 and status["cpuinfo"]["cpus"] == 8
    vms = px.cluster.resources.get(type="vm")
    assert {(v["id"], v["status"], v["template"]) for v in vms} == {("qemu/101", "running", 0),
                                                                     ("qemu/9000", "stopped", 1)}
    assert {r["type"] for r in px.cluster.resources.get()} == {"qemu", "node", "storage", "sdn"}
    members = [e for e in px.cluster.status.get() if e["type"] == "node"]
    assert [(m["name"], m["online"]) for m in members] == [("pve1", 1), ("pve2", 1), ("pve3", 1)]


def test_down_and_unknown_nodes(px, cluster):
    cluster.add_node("pve2", online=False)
    err = sync_error(px.nodes("pve2").qemu.get)
    assert (err.status_code, err.content) == (595, "Connection timed out")
    assert {n["node"]: n["status"] for n in px.nodes.get()}["pve2"] == "offline"
    err = sync_error(px.nodes("nowhere").status.get)
    assert err.status_code == 500
    assert err.content == ("hostname lookup 'nowhere' failed - failed to get address info for: nowhere: "
                           "Name or service not known")
    cluster.add_node("pve2", online=True)
    cluster.set_faults(down_nodes=["pve3"])
    assert sync_error(px.nodes("pve3").status.get).status_code == 595


# ---- faults and admin -------------------------------------------------------------------------------------------
def test_error_rate_gives_500s(sim, px):
    assert admin(sim, "POST", "faults", {"error_rate": 1.0, "seed": 7}).status_code == 200
    err = sync_error(px.nodes.get)
    assert (err.status_code, err.content) == (500, "Connection refused")
    err = sync_error(px.nodes("pve1").qemu(9000).clone.post, newid=101)
    assert err.content == "got no worker upid - start worker failed"
    assert admin(sim, "GET", "state").json()["vms"][0]["vmid"] == 9000  # admin endpoints are never faulted


def test_an_exact_plan_fails_every_nth_request(sim, px, cluster):
    assert admin(sim, "POST", "faults", {"error_every": 2}).json()["error_every"] == 2
    codes = []
    for _ in range(6):
        try:
            px.version.get()
            codes.append(200)
        except ResourceException as exc:
            codes.append(exc.status_code)
    assert codes == [200, 500] * 3
    cluster.set_faults(error_every=0)
    assert px.version.get()["release"]


def test_a_planned_clone_lock_timeout_hits_exactly_the_listed_clones():
    clock = FakeClock()
    state = ClusterState(clock=clock, storage_concurrency=4, lock_wait=1.0)
    state.seed_cluster()
    api = Api(state, TokenAuth("openvle@pve", "tasks", "t"))
    headers = {"Authorization": "PVEAPIToken=openvle@pve!tasks=t"}
    state.set_faults(clone_lock_timeouts=[2])
    upids = [api.handle("POST", "/nodes/pve1/qemu/9000/clone", {"newid": str(n)}, headers).body.decode().split('"')[3]
             for n in (101, 102, 103)]
    clock.advance(10.0)
    ends = {t["upid"]: t["exitstatus"] for t in state.snapshot()["tasks"]}
    assert [ends[u] for u in upids][0::2] == ["OK", "OK"]
    assert ends[upids[1]].startswith("clone failed: can't lock file '/var/lock/pve-manager/pve-storage-")
    assert [v["vmid"] for v in state.snapshot()["vms"]] == [101, 103, 9000]  # the failed one left nothing


def test_drop_rate_closes_the_connection(sim, px, cluster):
    cluster.set_faults(drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        px.version.get()
    cluster.set_faults(drop_rate=0.0)
    assert px.version.get()["release"]


def test_latency_is_added(px, cluster):
    cluster.set_faults(latency=0.25)
    started = time.monotonic()
    px.version.get()
    assert time.monotonic() - started >= 0.25


def test_admin_endpoints_round_trip(sim, px):
    assert admin(sim, "POST", "reset").json()["nodes"] == []
    assert admin(sim, "POST", "nodes", {"name": "n1", "maxcpu": 4, "maxmem": 8 * 1024**3}).json()["maxcpu"] == 4
    vm = admin(sim, "POST", "vms", {"vmid": 500, "node": "n1", "name": "tpl", "template": True,
                                    "tags": "base"}).json()
    assert (vm["vmid"], vm["template"], vm["tags"], vm["status"]) == (500, True, "base", "stopped")
    assert admin(sim, "POST", "vms", {"vmid": 500, "node": "n1"}).status_code == 400
    assert admin(sim, "POST", "vms", {"vmid": 501, "node": "n1", "bogus": 1}).status_code == 400
    config = admin(sim, "POST", "config", {"durations": {"start": 0.1}, "storage_concurrency": 3}).json()
    assert config["durations"]["start"] == 0.1 and config["storage_concurrency"] == 3
    assert admin(sim, "POST", "faults", {"latency": 0.0, "down_nodes": []}).json()["down_nodes"] == []

    assert [v["vmid"] for v in px.nodes("n1").qemu.get()] == [500]
    state = admin(sim, "GET", "state").json()
    assert set(state) == {"nodes", "vms", "tasks", "faults", "config"}
    assert admin(sim, "DELETE", "vms/500").status_code == 200
    assert admin(sim, "DELETE", "vms/500").status_code == 404
    assert admin(sim, "DELETE", "vms/tpl").json() == {"error": "vmid must be an integer"}
    assert admin(sim, "GET", "state").json()["vms"] == []


def test_outcomes_follow_elapsed_time_only():
    """In-process, with a hand-driven clock: the same sequence always gives the same result."""
    clock = FakeClock()
    state = ClusterState(clock=clock, storage_concurrency=1, lock_wait=1.0)
    state.seed_cluster()
    api = Api(state, TokenAuth("openvle@pve", "tasks", "t"))
    headers = {"Authorization": "PVEAPIToken=openvle@pve!tasks=t"}

    def post(path: str, **params) -> str:
        reply = api.handle("POST", path, params, headers)
        assert reply.status == 200, reply.body
        return reply.body.decode().split('"')[3]

    first = post("/nodes/pve1/qemu/9000/clone", newid="101")
    second = post("/nodes/pve1/qemu/9000/clone", newid="102")
    clock.advance(1.0)  # the second one's storage lock wait is over, the first clone (2 s) still runs
    snap = {t["upid"]: t for t in state.snapshot()["tasks"]}
    assert snap[first]["status"] == "running"
    assert snap[second]["exitstatus"].startswith("clone failed: can't lock file")
    clock.advance(1.0)
    assert {t["upid"]: t["exitstatus"] for t in state.snapshot()["tasks"]}[first] == "OK"
    assert [v["vmid"] for v in state.snapshot()["vms"]] == [101, 9000]


def test_node_task_list_active_then_archived():
    """GET /nodes/{node}/tasks: source=active lists running tasks (RUNNING) and those ended but not yet
    archived (their status, endtime); the archive lists ended ones newest first; filters, limit and total."""
    clock = FakeClock()
    state = ClusterState(clock=clock, durations={"linked_clone": 2.0})
    state.seed_cluster()
    api = Api(state, TokenAuth("openvle@pve", "tasks", "t"))
    headers = {"Authorization": "PVEAPIToken=openvle@pve!tasks=t"}

    def call(method: str, path: str, **params):
        reply = api.handle(method, path, params, headers)
        body = json.loads(reply.body or b"{}")
        return reply.status, body

    def tasks(**params) -> tuple[list[dict], int]:
        status, body = call("GET", "/nodes/pve1/tasks", **params)
        assert status == 200, body
        return body["data"], body["total"]

    first = call("POST", "/nodes/pve1/qemu/9000/clone", newid="101")[1]["data"]
    clock.advance(1.0)
    second = call("POST", "/nodes/pve1/qemu/9000/clone", newid="102")[1]["data"]
    active, total = tasks(source="active", typefilter="qmclone")
    assert [(t["upid"], t["status"]) for t in active] == [(first, "RUNNING"), (second, "RUNNING")] and total == 2
    assert active[0]["user"] == "openvle@pve!tasks" and "endtime" not in active[0]
    assert tasks(source="active", limit=1)[0][0]["upid"] == first and tasks(source="active", limit=1)[1] == 2
    assert tasks()[0] == []  # nothing archived yet

    clock.advance(1.5)  # the first clone ended 0.5 s ago: still in the active list, with its outcome
    active, _ = tasks(source="active")
    assert [(t["upid"], t["status"]) for t in active] == [(first, "OK"), (second, "RUNNING")]
    assert active[0]["endtime"] >= active[0]["starttime"]
    assert [t["upid"] for t in tasks(source="active", errors=1)[0]] == [second]  # running: status unknown
    clock.advance(2.0)  # archived now: only in the index, user and token apart
    assert [t["upid"] for t in tasks(source="active")[0]] == [second]
    archived, _ = tasks()
    assert [(t["upid"], t["status"], t["user"], t["tokenid"]) for t in archived] == [
        (first, "OK", "openvle@pve", "tasks")]
    assert [t["upid"] for t in tasks(source="all")[0]] == [second, first]
    assert tasks(statusfilter="ok")[0] == archived and tasks(statusfilter="error,warning")[0] == []
    assert tasks(source="active", vmid=101)[0] == [] and tasks(vmid=9000)[0] == archived
    assert tasks(source="active", typefilter="qmstart")[0] == []

    status, body = call("GET", "/nodes/pve1/tasks", source="running", statusfilter="fine")
    assert status == 400 and body["errors"] == {
        "source": "value 'running' does not have a value in the enumeration 'archive, active, all'",
        "statusfilter": "invalid format - invalid status 'fine'\n"}


def test_a_held_request_waits_until_released_and_requests_are_counted_by_route(px, cluster):
    """The fault suite holds a request to know its caller is inside it when the caller is killed."""
    import threading

    status = "GET /nodes/{node}/qemu/{vmid}/status/current"
    before = cluster.served[status]
    cluster.hold_requests(status, count=1)
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(px.nodes("pve1").qemu(9000).status.current.get()["status"]))
    caller.start()
    cluster.wait_holding(timeout=30)
    assert answers == [] and caller.is_alive()  # held: no answer until it is let go
    cluster.release_held()
    caller.join(30)
    assert answers and cluster.served[status] == before + 1
    assert px.nodes("pve1").qemu(9000).status.current.get()  # only the next one was held
    with pytest.raises(TimeoutError, match="no request held"):
        cluster.wait_holding(timeout=0.1)
