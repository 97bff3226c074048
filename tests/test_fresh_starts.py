"""A fresh start of one VM: a new copy of the template in place of a broken VM, the same access
link and password. Every role a separate process, Proxmox and Guacamole as simulators over their
real protocols, real Redis and DB (see test_events.py); the API is the backend app in this process."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import test_events
from conftest import ROOT, WAIT_SCALE, wait_for
from helpers import bearer, settled
from openvle import guacamole_passwords
from openvle.accounts.tokens import create_token
from openvle.backend.app import create_app
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, Event, Participant, Task, TaskLog, User, Vm, VmState
from openvle.lab_events import create_event, create_template, request_deploy
from test_events import make_event, ours_in_pve, people, settled_event, start_workers

sims = test_events.sims  # the simulators (module scope) and their per-test reset, shared with test_events
lab = test_events.lab


def _user_id(username: str) -> int:
    with session_scope() as session:
        return session.execute(select(User.id).where(User.username == username)).scalar_one()


def _token(username: str) -> str:
    return create_token(_user_id(username), "tests")[1]


def _vm_of(username: str, event_id: int) -> Vm:
    with session_scope() as session:
        vm_id = session.execute(select(Participant.vm_id).where(
            Participant.event_id == event_id, Participant.user_id == _user_id(username))).scalar_one()
        return session.get(Vm, vm_id)


def _reachable_connections(guac, username: str) -> set[str]:
    password = guacamole_passwords.reveal(_user_id(username))
    login = httpx.post(f"{guac.url}/api/tokens", data={"username": username, "password": password})
    assert login.status_code == 200, login.text
    body = login.json()
    return set(httpx.get(f"{guac.url}/api/session/data/{body['dataSource']}/connections",
                         headers={"Guacamole-Token": body["authToken"]}).json())


def _deployed(lab, start_role, n: int = 2, name: str = "Fresh Lab"):
    workers = start_workers(start_role, lab)
    event_id = make_event(n, name=name)
    request_deploy(event_id)
    event = wait_for(lambda: settled_event(event_id, "deployed"), 120, "the deploy", workers[0], interval=1)
    assert event.status == "deployed", event.status_reason
    return workers, event_id


def test_a_student_starts_their_vm_afresh_and_keeps_their_link_and_password(lab, start_role):
    pve, guac = lab["pve"], lab["guac"]
    workers, event_id = _deployed(lab, start_role)
    old = _vm_of("student01", event_id)
    assert _reachable_connections(guac, "student01") == {old.guac_connection_id}
    client = TestClient(create_app())
    mine, theirs = bearer(_token("student01")), bearer(_token("student02"))

    assert client.post(f"/api/vms/{old.id}/fresh-start", headers=theirs).status_code == 404  # not theirs to see
    asked = client.post(f"/api/vms/{old.id}/fresh-start", headers=mine)
    again = client.post(f"/api/vms/{old.id}/fresh-start", headers=mine)  # a double click
    assert asked.status_code == 202, asked.text
    assert again.status_code == 202 and again.json()["task"]["id"] == asked.json()["task"]["id"]
    assert again.json()["created"] is False
    task = wait_for(lambda: settled(asked.json()["task"]["id"]), 120, "the fresh start", workers[0], interval=1)

    assert task.status == "success", task.error
    new = _vm_of("student01", event_id)
    with session_scope() as session:
        old_now = session.get(Vm, old.id)
    assert new.id != old.id and new.replaces_id == old.id and old_now.replaced_by_id == new.id
    assert old_now.state == VmState.DELETED and new.state == VmState.READY and new.vmid != old.vmid
    assert (new.guac_connection_id, new.access_link) == (old.guac_connection_id, old.access_link)  # same link
    assert old_now.guac_connection_id is None  # nothing of the old VM is left to clean up
    vms = {int(v["vmid"]): v for v in pve.state.snapshot()["vms"]}
    assert old.vmid not in vms and vms[new.vmid]["status"] == "running" and vms[new.vmid]["name"] == old.name
    assert len(ours_in_pve(pve)) == 2
    assert _reachable_connections(guac, "student01") == {old.guac_connection_id}  # the same password, too
    assert old.guac_connection_id in _reachable_connections(guac, "teacher01")  # teachers still watch it
    assert len(guac.state.snapshot()["connections"]) == 2

    soon = client.post(f"/api/vms/{new.id}/fresh-start", headers=mine)
    assert soon.status_code == 429 and "RESET_TO_TEMPLATE_COOLDOWN" in soon.json()["error"]
    assert "the next is possible from" in soon.json()["error"] and 0 < int(soon.headers["Retry-After"]) <= 600
    from openvle.accounts.identity import Actor
    from openvle.service.vms import my_labs

    card = my_labs(Actor(user_id=_user_id("student01"), username="student01", role="student", via="token"))
    assert [c.vm.id for c in card] == [new.id] and card[0].state == "running"  # the old card is gone
    assert card[0].can_fresh_start is False and card[0].fresh_start_after is not None  # "possible again from …"
    with session_scope() as session:
        clones = session.execute(select(func.count()).select_from(Task).where(
            Task.operation == "vm.clone", Task.vm_id == new.id)).scalar()
        audit = session.execute(select(AuditEntry.action, AuditEntry.username, AuditEntry.outcome).where(
            AuditEntry.object_type == "vm")).all()
    assert clones == 1
    assert ("vms.fresh_start", "student01", 202) in audit and ("vms.fresh_start", "student01", 429) in audit
    assert ("vms.fresh_start", "student02", 404) in audit


def test_a_replanned_fresh_start_makes_one_new_vm_and_deletes_the_old_only_after_the_move(lab, start_role):
    from openvle.accounts.identity import cli_actor
    from openvle.jobs.fresh_starts import plan
    from openvle.service.fresh_starts import fresh_start

    workers, event_id = _deployed(lab, start_role, n=1, name="Retried Fresh")
    for worker in workers:  # nothing runs while the orchestrator plans (twice: its attempt retried)
        worker.stop()
    old = _vm_of("student01", event_id)
    asked = fresh_start(cli_actor("ops"), old.id)
    for _ in range(2):
        plan(old.id, by=f"task:{asked.task.id}")
    with session_scope() as session:
        replacements = session.execute(select(func.count()).select_from(Vm).where(Vm.replaces_id == old.id)).scalar()
        steps = session.execute(select(Task.operation, Task.target).where(
            Task.requested_by == f"task:{asked.task.id}").order_by(Task.id)).all()
        new_id = session.get(Vm, old.id).replaced_by_id
    assert replacements == 1 and new_id is not None  # the new VM is recorded before anything is cloned
    assert [op for op, _ in steps] == ["vm.clone", "vm.start", "guac.move_access", "vm.delete"]

    workers = start_workers(start_role, lab)
    task = wait_for(lambda: settled(asked.task.id), 120, "the fresh start", workers[0], interval=1)
    assert task.status == "success", task.error
    with session_scope() as session:
        order = dict(session.execute(select(Task.operation, Task.finished_at).where(
            Task.requested_by == f"task:{asked.task.id}")).all())
        replacements = session.execute(select(func.count()).select_from(Vm).where(Vm.replaces_id == old.id)).scalar()
    assert order["guac.move_access"] <= order["vm.delete"] and replacements == 1
    assert len(ours_in_pve(lab["pve"])) == 1 and _vm_of("student01", event_id).id == new_id


def test_refusals_say_why_and_the_cli_is_audited(lab, clean, settings_env):
    from openvle.accounts.identity import cli_actor
    from openvle.errors import Conflict, TooSoon
    from openvle.service.fresh_starts import fresh_start

    settings_env(**lab["env"], RESET_TO_TEMPLATE_COOLDOWN="3600")
    template = create_template("t-fresh", pve_vmid=9001, node="pve1")
    start = dt.datetime(2030, 5, 4, 9, 0)
    event_id = create_event("Fresh Refusals", template, start, start + dt.timedelta(hours=8),
                            participants_=people(1))
    with session_scope() as session:  # a VM as a deploy leaves it (no worker runs in this test)
        person = session.execute(select(Participant).where(Participant.event_id == event_id)).scalar_one()
        vm = Vm(name="fresh-refusals", template_id=template, state=VmState.READY, status="running", vmid=4321,
                node="pve1", event_id=event_id, participant_id=person.id, user_id=person.user_id)
        session.add(vm)
        session.flush()
        person.vm_id, vm_id = vm.id, vm.id
    admin = cli_actor("ops")

    def refused(kind) -> str:
        try:
            fresh_start(admin, vm_id)
        except kind as exc:
            return str(exc)
        raise AssertionError(f"no {kind.__name__}")

    assert "its event is scheduled: a fresh start is possible while the event is deployed" in refused(Conflict)
    for status in ("suspended", "deployed"):
        with session_scope() as session:
            session.get(Event, event_id).status = status
        if status == "suspended":
            assert "its event is suspended" in refused(Conflict)
    first = fresh_start(admin, vm_id)
    assert first.created
    with session_scope() as session:  # as if it had finished: the cooldown alone stands in the way
        session.execute(Task.__table__.update().where(Task.id == first.task.id).values(status="success"))
    assert "one fresh start per 60 min (RESET_TO_TEMPLATE_COOLDOWN)" in refused(TooSoon)

    result = subprocess.run([sys.executable, "-m", "openvle", "vm", "fresh-start", str(vm_id)], env=clean.env(
        **lab["env"], RESET_TO_TEMPLATE_COOLDOWN="3600"), cwd=ROOT, capture_output=True, text=True,
        timeout=120 * WAIT_SCALE)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the next is possible from" in result.stderr
    with session_scope() as session:
        audit = session.execute(select(AuditEntry.action, AuditEntry.via, AuditEntry.outcome).where(
            AuditEntry.object_type == "vm", AuditEntry.object_id == str(vm_id))).all()
    assert audit == [("cli.vm.fresh_start", "cli", 429)]


def test_a_fresh_start_under_planned_faults_still_makes_exactly_one_new_vm(lab, start_role):
    pve, guac = lab["pve"], lab["guac"]
    workers, event_id = _deployed(lab, start_role, n=2, name="Faulty Fresh")
    old = _vm_of("student02", event_id)
    # Exact plans: the clone is carried out but its answer lost (the job must adopt it, not clone
    # again), every 5th Proxmox request and every 3rd Guacamole request fails.
    pve.state.set_faults(lost_clone_responses=[1], error_every=5)
    guac.state.set_faults(error_every=3)
    from openvle.accounts.identity import cli_actor
    from openvle.service.fresh_starts import fresh_start

    asked = fresh_start(cli_actor("ops"), old.id)
    task = wait_for(lambda: settled(asked.task.id), 180, "the fresh start", workers[0], interval=1)

    assert task.status == "success", task.error
    assert pve.state.error_plan.hits > 0 and guac.state.error_plan.hits > 0, "every plan should have hit"
    pve.state.set_faults(error_every=0)
    guac.state.set_faults(error_every=0)
    new = _vm_of("student02", event_id)
    with session_scope() as session:
        made = session.execute(select(func.count()).select_from(Vm).where(Vm.replaces_id == old.id)).scalar()
        clone_log = session.execute(select(TaskLog.message).join(Task, Task.id == TaskLog.task_id).where(
            Task.operation == "vm.clone", Task.vm_id == new.id)).scalars().all()
    assert any("was lost" in line for line in clone_log), clone_log  # the lost answer was met, and adopted
    tagged = ours_in_pve(pve)
    assert made == 1 and len(tagged) == 2 and new.vmid in tagged and old.vmid not in tagged  # none twice, none left
    assert (new.guac_connection_id, new.access_link) == (old.guac_connection_id, old.access_link)
    assert _reachable_connections(guac, "student02") == {old.guac_connection_id}
    assert len(guac.state.snapshot()["connections"]) == 2


def test_an_archive_during_a_fresh_start_leaves_no_vm_behind(lab, start_role):
    from openvle.accounts.identity import cli_actor
    from openvle.jobs.fresh_starts import plan
    from openvle.lab_events import request_archive
    from openvle.service.fresh_starts import fresh_start

    workers, event_id = _deployed(lab, start_role, n=1, name="Archived Fresh")
    for worker in workers:  # the fresh start is planned (its new VM recorded), nothing cloned yet
        worker.stop()
    old = _vm_of("student01", event_id)
    asked = fresh_start(cli_actor("ops"), old.id)
    plan(old.id, by=f"task:{asked.task.id}")
    request_archive(event_id)

    workers = start_workers(start_role, lab)
    event = wait_for(lambda: settled_event(event_id, "archived", "failed"), 180, "the archive", workers[0],
                     interval=1)
    wait_for(lambda: settled(asked.task.id), 120, "the fresh start to settle", workers[0], interval=1)

    assert event.status == "archived", event.status_reason
    with session_scope() as session:
        states = dict(session.execute(select(Vm.id, Vm.state).where(Vm.event_id == event_id)).all())
    assert len(states) == 2 and set(states.values()) == {"deleted"}, states  # the replacement too
    assert ours_in_pve(lab["pve"]) == [] and lab["guac"].state.snapshot()["connections"] == []
