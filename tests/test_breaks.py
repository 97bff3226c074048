"""Suspend and resume an event (a break): every role a separate process, Proxmox and Guacamole as
simulators over their real protocols, real Redis and DB (see test_events.py). The API is the
backend app in this process, as a script would call it."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import test_events
from conftest import ROOT, WAIT_SCALE, wait_for
from helpers import account, bearer, settled
from openvle import guacamole_passwords
from openvle.accounts.tokens import create_token
from openvle.backend.app import create_app
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, Event, Task, User, Vm
from openvle.lab_events import (
    EventError,
    create_event,
    create_template,
    request_deploy,
    request_resume,
    request_suspend,
)
from test_events import event_row, make_event, people, settled_event, start_workers

sims = test_events.sims  # the simulators (module scope) and their per-test reset, shared with test_events
lab = test_events.lab


def _vms(event_id: int) -> list[Vm]:
    with session_scope() as session:
        return list(session.execute(select(Vm).where(Vm.event_id == event_id).order_by(Vm.id)).scalars())


def _pve_status(pve, vmids) -> dict[int, str]:
    return {int(v["vmid"]): v["status"] for v in pve.state.snapshot()["vms"] if int(v["vmid"]) in set(vmids)}


def _user_id(username: str) -> int:
    with session_scope() as session:
        return session.execute(select(User.id).where(User.username == username)).scalar_one()


def _reachable_connections(guac, username: str) -> set[str]:
    """What the person sees when they log in to Guacamole with the password their email gave them."""
    password = guacamole_passwords.reveal(_user_id(username))
    login = httpx.post(f"{guac.url}/api/tokens", data={"username": username, "password": password})
    assert login.status_code == 200, login.text  # the same password as before the break
    body = login.json()
    listed = httpx.get(f"{guac.url}/api/session/data/{body['dataSource']}/connections",
                       headers={"Guacamole-Token": body["authToken"]})
    return set(listed.json())


def _deployed(lab, start_role, n: int = 2, name: str = "Break Lab"):
    workers = start_workers(start_role, lab)
    event_id = make_event(n, name=name)
    request_deploy(event_id)
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the deploy",
                     workers[0], interval=1)
    assert event.status == "deployed", event.status_reason
    return workers, event_id


def test_suspend_stops_every_vm_and_takes_access_away_resume_brings_back_the_same_links(lab, start_role):
    pve, guac = lab["pve"], lab["guac"]
    workers, event_id = _deployed(lab, start_role)
    before = {vm.id: (vm.vmid, vm.guac_connection_id, vm.access_link) for vm in _vms(event_id)}
    assert all(_reachable_connections(guac, f"student{i:02d}") for i in (1, 2))
    teacher_token = create_token(_user_id("teacher01"), "tests")[1]  # the event's teacher
    _, outsider_token = account("outsider", "student")
    client = TestClient(create_app())

    # Nonsense is refused, saying why; a student who is not in it does not see the event at all.
    refused = client.post(f"/api/events/{event_id}/resume", headers=bearer(teacher_token))
    assert refused.status_code == 409 and "only a suspended event can be resumed" in refused.json()["error"]
    assert client.post(f"/api/events/{event_id}/suspend", headers=bearer(outsider_token)).status_code == 404

    asked = client.post(f"/api/events/{event_id}/suspend", headers=bearer(teacher_token))
    assert asked.status_code == 202, asked.text
    again = client.post(f"/api/events/{event_id}/suspend", headers=bearer(teacher_token))
    assert again.json()["task"]["id"] == asked.json()["task"]["id"] and again.json()["created"] is False
    event = wait_for(lambda: settled_event(event_id, "suspended", "failed"), 120, "the suspend", workers[0],
                     interval=1)

    assert event.status == "suspended" and event.status_reason is None and event.suspended_at is not None
    vms = _vms(event_id)
    assert set(_pve_status(pve, [v.vmid for v in vms]).values()) == {"stopped"}
    assert {vm.id: (vm.vmid, vm.guac_connection_id, vm.access_link) for vm in vms} == before  # all kept
    snapshot = guac.state.snapshot()
    assert len(snapshot["connections"]) == 2 and len(snapshot["sharingProfiles"]) == 2
    assert _reachable_connections(guac, "student01") == set() and _reachable_connections(guac, "teacher01") == set()
    shown = client.get(f"/api/events/{event_id}/progress", headers=bearer(teacher_token)).json()
    assert shown["operation"] == "event.suspend" and shown["percent"] == 100
    assert {k: shown["participants"]["student01"][k] for k in ("revoke", "stop")} == {"revoke": "done", "stop": "done"}
    twice = client.post(f"/api/events/{event_id}/suspend", headers=bearer(teacher_token))
    assert twice.status_code == 409 and "is suspended" in twice.json()["error"]
    start = client.post(f"/api/vms/{vms[0].id}/start", headers=bearer(teacher_token))
    assert start.status_code == 409 and "suspended" in start.json()["error"]  # a click would undo the break

    resumed = client.post(f"/api/events/{event_id}/resume", headers=bearer(teacher_token))
    assert resumed.status_code == 202, resumed.text
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the resume",
                     workers[0], interval=1)

    assert event.status == "deployed", event.status_reason
    vms = _vms(event_id)
    assert set(_pve_status(pve, [v.vmid for v in vms]).values()) == {"running"}
    assert {vm.id: (vm.vmid, vm.guac_connection_id, vm.access_link) for vm in vms} == before
    connections = {vm.guac_connection_id for vm in vms}
    assert _reachable_connections(guac, "student01") == {before[vms[0].id][1]}
    assert _reachable_connections(guac, "teacher01") == connections
    assert len(guac.state.snapshot()["connections"]) == 2  # the same ones, none made anew
    with session_scope() as session:
        audit = session.execute(select(AuditEntry.action, AuditEntry.username, AuditEntry.outcome).where(
            AuditEntry.object_type == "event", AuditEntry.object_id == str(event_id)).order_by(AuditEntry.id)).all()
        emails = session.execute(select(func.count()).select_from(Task).where(
            Task.operation == "event.access_email", Task.event_id == event_id)).scalar()
    assert ("events.suspend", "teacher01", 202) in audit and ("events.resume", "teacher01", 202) in audit
    assert ("events.suspend", "teacher01", 409) in audit  # refusals are recorded too
    assert emails == 2  # the access emails of the deploy only: the links did not change


def test_a_suspend_that_meets_guacamole_down_still_stops_the_vms_and_suspending_again_finishes(
        lab, start_role, settings_env):
    pve, guac = lab["pve"], lab["guac"]
    settings_env(**lab["env"], WORKER_MAX_RETRY="0")  # a step fails for good at once: no retry waits
    workers = [start_role(role, **lab["env"], WORKER_MAX_RETRY="0") for role in ("worker", "worker-vm-clone")]
    event_id = make_event(2, name="Outage Lab")
    request_deploy(event_id)
    wait_for(lambda: settled_event(event_id, "deployed"), 120, "the deploy", workers[0], interval=1)
    guac.state.set_faults(error_every=1)

    first = request_suspend(event_id, requested_by="teacher")
    event = wait_for(lambda: settled_event(event_id, "suspended", "failed"), 120, "the suspend", workers[0],
                     interval=1)

    assert event.status == "suspended"
    assert event.status_reason.startswith("not every VM was suspended: student01: revoke failed")
    vms = _vms(event_id)
    assert set(_pve_status(pve, [v.vmid for v in vms]).values()) == {"stopped"}  # stopping never waited on Guacamole
    with session_scope() as session:
        before = session.execute(select(func.max(Task.id))).scalar()

    guac.state.set_faults(error_every=0)
    # The orchestrator releases the event inside its job and the worker records its Task a moment
    # later: a request in between finds the first suspend still in flight (and answers with it).
    wait_for(lambda: settled(first.task_id), 30, "the first suspend's Task", workers[0])
    second = request_suspend(event_id, requested_by="teacher")  # allowed: the last one left work undone
    event = wait_for(lambda: settled_event(event_id, "suspended") if event_row(event_id).status_reason is None
                     else None, 120, "the second suspend", workers[0], interval=1)

    assert second.created and second.task_id != first.task_id
    assert _reachable_connections(guac, "student01") == set()
    with session_scope() as session:
        again = session.execute(select(Task.operation, func.count()).where(Task.id > before)
                                .group_by(Task.operation)).all()
    assert dict(again) == {"event.suspend": 1, "guac.suspend_access": 2, "vm.stop": 2, "event.mark_suspended": 1}
    assert len(guac.state.snapshot()["connections"]) == 2
    try:
        request_suspend(event_id)
    except EventError as exc:  # now complete: a third suspend is nonsense
        assert "is suspended" in str(exc)
    else:
        raise AssertionError("a complete suspend was requested again")


def test_duplicate_suspends_and_a_replanning_orchestrator_make_each_step_once(lab, start_role):
    from openvle.jobs.breaks import plan_suspend

    workers, event_id = _deployed(lab, start_role, n=3, name="Double Break")
    for worker in workers:  # nothing runs while the requests come in: every step stays queued
        worker.stop()
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(request_suspend(event_id, requested_by="t")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.task_id for r in results}) == 1 and sum(r.created for r in results) == 1
    # The orchestrator planning twice (its attempt retried after a lost answer) finds its steps queued.
    for _ in range(2):
        plan_suspend(event_id, by=f"task:{results[0].task_id}")
    with session_scope() as session:
        counts = dict(session.execute(select(Task.operation, func.count()).where(
            Task.event_id == event_id, Task.operation.not_in(DEPLOY_OPERATIONS)).group_by(Task.operation)).all())
    assert counts == {"event.suspend": 1, "guac.suspend_access": 3, "vm.stop": 3, "event.mark_suspended": 1}

    workers = start_workers(start_role, lab)
    event = wait_for(lambda: settled_event(event_id, "suspended", "failed"), 120, "the suspend", workers[0],
                     interval=1)
    assert event.status == "suspended", event.status_reason
    with session_scope() as session:
        counts = dict(session.execute(select(Task.operation, func.count()).where(
            Task.event_id == event_id, Task.operation.not_in(DEPLOY_OPERATIONS)).group_by(Task.operation)).all())
    assert counts == {"event.suspend": 1, "guac.suspend_access": 3, "vm.stop": 3, "event.mark_suspended": 1}

    request_resume(event_id, requested_by="t")
    request_resume(event_id, requested_by="t")
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the resume",
                     workers[0], interval=1)
    assert event.status == "deployed", event.status_reason
    with session_scope() as session:
        resumes = session.execute(select(func.count()).select_from(Task).where(
            Task.operation == "event.resume", Task.event_id == event_id)).scalar()
    assert resumes == 1 and len(test_events.ours_in_pve(lab["pve"])) == 3
    assert set(_pve_status(lab["pve"], test_events.ours_in_pve(lab["pve"])).values()) == {"running"}


DEPLOY_OPERATIONS = ("event.deploy", "vm.clone", "vm.start", "guac.provision", "guac.teacher_account",
                     "event.access_email", "event.teacher_email", "event.course", "event.enrol",
                     "event.course_email", "event.mark_deployed")


def test_the_lifecycle_suspends_and_resumes_on_the_break_once(lab, settings_env):
    from openvle.context import TaskContext
    from openvle.enqueue import enqueue_operation
    from openvle.jobs.lifecycle import lifecycle

    now = dt.datetime(2027, 3, 1, 1, 0)
    template = create_template("t-break", pve_vmid=9001, node="pve1")

    def event(name, status, suspend_days, resume_days, suspended_days=None):
        eid = create_event(name, template, now - dt.timedelta(days=10), now + dt.timedelta(days=30),
                           participants_=people(1, name.lower()), status="draft",
                           suspend_at=now + dt.timedelta(days=suspend_days),
                           resume_at=now + dt.timedelta(days=resume_days))
        with session_scope() as session:
            row = session.get(Event, eid)
            row.status = status
            if suspended_days is not None:
                row.suspended_at = now + dt.timedelta(days=suspended_days)
        return eid

    on_break = event("Onbreak", "deployed", -0.5, 6)  # the break began: suspend
    not_yet = event("Notyet", "deployed", 2, 6)  # begins later
    over = event("Over", "suspended", -9, -0.5, suspended_days=-9)  # the break ended: resume
    by_hand = event("Byhand", "deployed", -3, 6, suspended_days=-3)  # resumed by hand during its break: left so
    later_by_hand = event("Laterhand", "suspended", -9, -5, suspended_days=-1)  # suspended by hand after it

    def run():
        task = enqueue_operation("events.lifecycle")
        return lifecycle(TaskContext(task_id=task.id, attempt=1, max_attempts=4, queue="core_periodic"),
                         now=now.isoformat())

    first = run()
    assert first["suspend"] == [on_break] and first["resume"] == [over]
    with session_scope() as session:  # what the orchestrators would do: the states they leave
        session.get(Event, on_break).status = "suspended"
        session.get(Event, over).status = "deployed"
    second = run()  # the same day again (and the next days of the break) changes nothing
    assert second["suspend"] == [] and second["resume"] == []
    assert event_row(on_break).suspended_at == now
    with session_scope() as session:
        suspends = sorted(session.execute(select(Task.target).where(Task.operation == "event.suspend")).scalars())
        resumes = sorted(session.execute(select(Task.target).where(Task.operation == "event.resume")).scalars())
    assert suspends == [f"event:{on_break}"] and resumes == [f"event:{over}"]
    for untouched, status in ((not_yet, "deployed"), (by_hand, "deployed"), (later_by_hand, "suspended")):
        assert event_row(untouched).status == status


def test_the_cli_refuses_nonsense_in_one_line_and_audits_who_asked(lab, clean):
    template = create_template("t-cli", pve_vmid=9001, node="pve1")
    start = dt.datetime(2030, 5, 4, 9, 0)
    event_id = create_event("Cli Break", template, start, start + dt.timedelta(hours=8), participants_=people(1))
    env = clean.env()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "openvle", *args], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120 * WAIT_SCALE)

    suspend = cli("event", "suspend", str(event_id))
    resume = cli("event", "resume", str(event_id))

    assert suspend.returncode == 2 and suspend.stderr.count("\n") == 1
    assert f"event {event_id} is scheduled: only a deployed event can be suspended" in suspend.stderr
    assert resume.returncode == 2 and "only a suspended event can be resumed" in resume.stderr
    with session_scope() as session:
        audit = session.execute(select(AuditEntry.action, AuditEntry.via, AuditEntry.outcome).where(
            AuditEntry.object_id == str(event_id))).all()
    assert sorted(audit) == [("cli.event.resume", "cli", 409), ("cli.event.suspend", "cli", 409)]


def test_suspend_and_resume_under_planned_faults_end_where_they_should(lab, start_role):
    pve, guac = lab["pve"], lab["guac"]
    workers, event_id = _deployed(lab, start_role, n=3, name="Faulty Break")
    vmids = [vm.vmid for vm in _vms(event_id)]
    # Exact plans: every 3rd Proxmox write is carried out but its answer lost (a stop or start must
    # look before it asks again), every 4th Proxmox request and every 3rd Guacamole request fails.
    pve.state.set_faults(lose_every=3, error_every=4)
    guac.state.set_faults(error_every=3)

    request_suspend(event_id, requested_by="t")
    event = wait_for(lambda: settled_event(event_id, "suspended", "failed"), 180, "the suspend", workers[0],
                     interval=1)
    assert event.status == "suspended" and event.status_reason is None, event.status_reason
    assert set(_pve_status(pve, vmids).values()) == {"stopped"}
    request_resume(event_id, requested_by="t")
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 180, "the resume",
                     workers[0], interval=1)

    assert event.status == "deployed", event.status_reason
    assert pve.state.lose_plan.hits > 0 and pve.state.error_plan.hits > 0 and guac.state.error_plan.hits > 0
    pve.state.set_faults(lose_every=0, error_every=0)
    guac.state.set_faults(error_every=0)
    assert set(_pve_status(pve, vmids).values()) == {"running"} and len(test_events.ours_in_pve(pve)) == 3
    assert len(guac.state.snapshot()["connections"]) == 3
    assert _reachable_connections(guac, "student03") == {_vms(event_id)[2].guac_connection_id}


def test_a_break_is_set_checked_and_removed_through_the_api(lab, clean):
    from helpers import admin_client

    template = create_template("t-api-break", pve_vmid=9001, node="pve1")
    start = dt.datetime(2030, 5, 4, 9, 0)
    event_id = create_event("Api Break", template, start, start + dt.timedelta(days=30), participants_=people(1))
    client = admin_client()

    wrong = client.patch(f"/api/events/{event_id}", json={"suspend_at": "2030-05-20T00:00:00Z",
                                                          "resume_at": "2030-05-13T00:00:00Z"})
    assert wrong.status_code == 422 and "a break ends after it begins" in wrong.json()["error"]
    alone = client.patch(f"/api/events/{event_id}", json={"resume_at": "2030-05-13T00:00:00Z"})
    assert alone.status_code == 422 and "needs its suspend_at too" in alone.json()["error"]
    assert event_row(event_id).resume_at is None  # nothing half-stored

    made = client.patch(f"/api/events/{event_id}", json={"suspend_at": "2030-05-11T00:00:00+02:00",
                                                         "resume_at": "2030-05-18T00:00:00Z"})
    assert made.status_code == 200, made.text
    assert (made.json()["suspend_at"], made.json()["resume_at"]) == ("2030-05-10T22:00:00.000Z",
                                                                     "2030-05-18T00:00:00.000Z")
    cleared = client.patch(f"/api/events/{event_id}", json={"suspend_at": None, "resume_at": None})
    assert cleared.status_code == 200 and cleared.json()["suspend_at"] is None
