"""Guacamole access end to end: the real HTTP client against the Guacamole simulator, workers, DB."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import wait_for
from helpers import retry_now, settled
from openvle.db.engine import session_scope
from openvle.db.models import Template, User, Vm
from openvle.enqueue import enqueue_operation
from openvle.guacamole_passwords import reveal
from sandbox.guacamole import GuacamoleSimulator, client_link_id

ADMIN_PASSWORD = "guac-admin-pass-4471"


@pytest.fixture(scope="module")
def guac_server():
    server = GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin", password=ADMIN_PASSWORD,
                                data_source="mysql")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def guac(guac_server, settings_env):
    guac_server.state.reset()
    env = {"GUACAMOLE_URL": guac_server.url, "GUACAMOLE_USER": "guacadmin", "GUACAMOLE_PASSWORD": ADMIN_PASSWORD,
           "GUACAMOLE_DATASOURCE": "mysql"}
    settings_env(**env)
    guac_server.env = env
    return guac_server


def people_and_vm(protocol: str = "rdp", port: int = 3389) -> tuple[int, list[int]]:
    with session_scope() as session:
        template = Template(name=f"t-{protocol}", pve_vmid=9000, node="pve1", protocol=protocol, port=port)
        ada = User(username="ada", email="ada@example.org", first_name="Ada", last_name="Lovelace")
        teachers = [User(username=f"teacher{i}", email=f"t{i}@example.org", first_name="T", last_name=str(i))
                    for i in (1, 2)]
        session.add_all([template, ada, *teachers])
        session.flush()
        vm = Vm(name="lab-1-ada", template_id=template.id, vmid=10000, node="pve1", state="ready", user_id=ada.id)
        session.add(vm)
        session.flush()
        return vm.id, [t.id for t in teachers]


def state(guac) -> dict:
    return guac.state.snapshot()


def usernames(snapshot: dict) -> list[str]:
    return sorted(u["username"] for u in snapshot["users"])


def provision(guac, worker, vm_id, teacher_ids):
    task = enqueue_operation("guac.provision", {"vm_id": vm_id, "teacher_ids": teacher_ids})
    done = wait_for(lambda: settled(task.id), 30, "provisioning", worker)
    assert done.status == "success", done.error
    return done


def test_provisioning_twice_creates_each_object_once(guac, start_role):
    vm_id, teacher_ids = people_and_vm()
    worker = start_role("worker", **guac.env)

    first = provision(guac, worker, vm_id, teacher_ids)
    second = provision(guac, worker, vm_id, teacher_ids)

    assert first.result == second.result
    snapshot = state(guac)
    assert usernames(snapshot) == ["ada", "guacadmin", "teacher1", "teacher2"]
    (connection,) = snapshot["connections"]
    assert connection["name"] == "lab-1-ada" and connection["protocol"] == "rdp"
    assert connection["parameters"]["hostname"] == "lab-1-ada" and connection["parameters"]["port"] == "3389"
    (profile,) = snapshot["sharingProfiles"]
    assert profile["parameters"]["read-only"] == "true"
    conn_id, profile_id = first.result["connection"], first.result["sharing_profile"]
    perms = snapshot["permissions"]
    assert perms["ada"]["connectionPermissions"] == {conn_id: ["READ"]}
    assert perms["ada"].get("sharingProfilePermissions", {}) == {}
    for teacher in ("teacher1", "teacher2"):
        assert perms[teacher]["connectionPermissions"] == {conn_id: ["READ"]}
        assert perms[teacher]["sharingProfilePermissions"] == {profile_id: ["READ"]}
    with session_scope() as session:
        vm = session.get(Vm, vm_id)
        ada = session.execute(select(User).where(User.username == "ada")).scalar_one()
        assert vm.guac_connection_id == conn_id and vm.guac_sharing_profile_id == profile_id
        assert vm.access_link == f"{guac.url}/#/client/{client_link_id(conn_id, 'mysql')}"
        assert ada.guacamole_password_encrypted and reveal(ada.id) not in worker.output
    assert ADMIN_PASSWORD not in worker.output


def test_cleanup_removes_exactly_what_provisioning_made(guac, start_role):
    vm_id, teacher_ids = people_and_vm("ssh", 22)
    worker = start_role("worker", **guac.env)
    before = state(guac)
    provision(guac, worker, vm_id, teacher_ids)
    with session_scope() as session:
        ada_id = session.execute(select(User.id).where(User.username == "ada")).scalar_one()
        session.get(Vm, vm_id).state = "deleted"  # archived: its access goes

    for operation, params in (("guac.cleanup_vm", {"vm_id": vm_id}), ("guac.cleanup_user", {"user_id": ada_id})):
        for _ in range(2):  # and twice is fine
            task = enqueue_operation(operation, params)
            assert wait_for(lambda t=task: settled(t.id), 30, operation, worker).status == "success"

    after = state(guac)
    assert not after["connections"] and not after["sharingProfiles"]
    assert usernames(after) == sorted(set(usernames(before)) | {"teacher1", "teacher2"})
    with session_scope() as session:
        vm = session.get(Vm, vm_id)
        assert vm.guac_connection_id is None and vm.access_link is None


def test_an_expired_token_is_renewed(guac, start_role):
    vm_id, teacher_ids = people_and_vm()
    worker = start_role("worker", **guac.env)
    provision(guac, worker, vm_id, teacher_ids)
    guac.state.expire_tokens()
    provision(guac, worker, vm_id, teacher_ids)  # logs in again instead of failing


def test_wrong_admin_password_is_permanent_and_never_shown(guac, start_role, settings_env):
    vm_id, teacher_ids = people_and_vm()
    env = {**guac.env, "GUACAMOLE_PASSWORD": "not-the-pass-3307"}
    settings_env(**env)
    worker = start_role("worker", **env)
    task = enqueue_operation("guac.provision", {"vm_id": vm_id, "teacher_ids": teacher_ids})
    done = wait_for(lambda: settled(task.id), 30, "provisioning", worker)
    assert done.status == "error" and len(done.subtasks) == 1
    assert "check GUACAMOLE_USER and GUACAMOLE_PASSWORD" in done.error
    assert "not-the-pass-3307" not in done.error + worker.output


def test_a_transient_fault_is_retried_and_succeeds(guac, start_role):
    vm_id, teacher_ids = people_and_vm()
    worker = start_role("worker", **guac.env)
    guac.state.set_faults(error_rate=1.0)
    task = enqueue_operation("guac.provision", {"vm_id": vm_id, "teacher_ids": teacher_ids})
    wait_for(lambda: any(s.status == "error" for s in load(task.id).subtasks), 30, "a failed attempt", worker)
    guac.state.set_faults(error_rate=0.0)
    assert 9 <= retry_now(task.id, attempt=1) <= 15  # the queue's first wait, 10 s, made due now
    done = wait_for(lambda: settled(task.id), 40, "the retry", worker)
    assert done.status == "success" and len(done.subtasks) == 2


def load(task_id):
    from helpers import load_task

    return load_task(task_id)


def test_the_session_is_reused_and_given_back_when_the_worker_stops(guac, start_role):
    vm_id, teacher_ids = people_and_vm()
    worker = start_role("worker", **guac.env)
    provision(guac, worker, vm_id, teacher_ids)
    provision(guac, worker, vm_id, teacher_ids)
    assert state(guac)["tokens"] == 1  # one login for both jobs (two work horses)

    assert worker.stop() == 0

    assert state(guac)["tokens"] == 0
