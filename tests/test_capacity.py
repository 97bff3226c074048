"""Capacity: whether an event fits the cluster's memory, shown to its teachers, enforced when it is
deployed (an admin may override, and the audit log says who), and told once to its teachers and the
admins when a scheduled event stops fitting.

The cluster: pve1 and pve2 online with 32 GiB each (2 GiB used by other VMs on each), pve3 offline;
the template's VMs take 4 GiB. Usable: 64 GiB x 0.9 = 57.6 GiB; 4 GiB used elsewhere; so 13.6 GiB
spare with 10 VMs (fits), 1.6 GiB with 13 (tight: under 10 % of 57.6), 2.4 GiB short with 14.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from helpers import account, bearer
from openvle import capacity
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, Email, Event, Node, NodeStorage, Task, Template, Vm, VmState, utcnow
from openvle.enqueue import enqueue_operation
from openvle.jobs.lifecycle import lifecycle
from openvle.lab_events import DoesNotFit, create_event, create_template, request_deploy

GIB = 1024**3


def people(n: int, prefix: str = "stud") -> list[dict]:
    return [{"username": f"{prefix}{i:02d}", "email": f"{prefix}{i:02d}@uni.example", "first_name": "Ada",
             "last_name": f"L{i}"} for i in range(1, n + 1)]


@pytest.fixture
def cluster(settings_env):
    settings_env(ADMIN_EMAILS="ops@uni.example")
    with session_scope() as session:
        session.add_all([Node(name="pve1", status="online", maxmem=32 * GIB, mem=2 * GIB),
                         Node(name="pve2", status="online", maxmem=32 * GIB, mem=2 * GIB),
                         Node(name="pve3", status="offline", maxmem=32 * GIB, mem=0)])
    template = create_template("tpl", pve_vmid=9001, node="pve1")
    with session_scope() as session:
        session.execute(update(Template).where(Template.id == template).values(maxmem=4 * GIB))
    return template


def lab(template: int, n: int, name: str = "Lab", start_in_days: float = 10, status: str = "scheduled",
        teacher: str = "teach") -> int:
    start = utcnow() + dt.timedelta(days=start_in_days)
    return create_event(name, template, start, start + dt.timedelta(days=1), participants_=people(n, name.lower()),
                        teachers=[{"username": teacher, "email": f"{teacher}@uni.example", "first_name": "Tea",
                                   "last_name": "Cher"}], status=status)


def fit_of(event_id: int, participants: int | None = None) -> capacity.Fit:
    with session_scope() as session:
        return capacity.assess(session, session.get(Event, event_id), participants)


def test_the_verdict_follows_the_numbers(cluster):
    event_id = lab(cluster, 10)
    fits = fit_of(event_id)
    assert (fits.verdict, fits.needed, fits.usable, fits.elsewhere, fits.nodes) == (
        "fits", 40 * GIB, int(57.6 * GIB), 4 * GIB, 2)
    assert fits.summary.startswith("fits, 13.6 GiB to spare: 10 VM(s) x 4.0 GiB = 40.0 GiB needed"), fits.summary
    tight = fit_of(event_id, participants=13)
    assert tight.verdict == "tight" and tight.summary.startswith("tight, 1.6 GiB to spare"), tight.summary
    short = fit_of(event_id, participants=14)
    assert short.verdict == "does not fit" and short.spare < 0
    assert short.summary.startswith("does not fit, short by 2.4 GiB"), short.summary


def test_overlapping_events_count_and_the_others_do_not(cluster):
    event_id = lab(cluster, 5)
    lab(cluster, 9, name="Same", start_in_days=11)  # the same fortnight: 36 GiB
    lab(cluster, 9, name="Later", start_in_days=60)  # its deploy comes after this one's archive
    lab(cluster, 9, name="Sketch", start_in_days=10, status="draft")  # nobody committed to a draft
    archived = lab(cluster, 9, name="Gone", start_in_days=10)
    with session_scope() as session:
        session.get(Event, archived).status = "archived"
    fit = fit_of(event_id)
    assert fit.other_events == 36 * GIB, fit
    assert fit.verdict == "does not fit" and fit.summary.startswith("does not fit, short by 2.4 GiB"), fit.summary


def test_allowed_nodes_and_our_own_running_vms(cluster, settings_env):
    settings_env(ADMIN_EMAILS="ops@uni.example", PVE_NODES="pve1")
    event_id = lab(cluster, 3)
    with session_scope() as session:  # one of our VMs runs on pve1: its 4 GiB are in pve1's used memory
        session.execute(update(Node).where(Node.name == "pve1").values(mem=6 * GIB))
        session.add(Vm(name="vm-other", template_id=cluster, vmid=4242, node="pve1", state=VmState.READY,
                       status="running"))
    fit = fit_of(event_id)
    assert (fit.nodes, fit.usable, fit.elsewhere, fit.needed) == (1, int(28.8 * GIB), 2 * GIB, 12 * GIB), fit
    assert fit.verdict == "fits"


def test_unknown_until_node_sync_and_the_template_say_and_unknown_never_blocks(settings_env):
    settings_env()
    template = create_template("tpl", pve_vmid=9001, node="pve1")
    event_id = lab(template, 50)
    fit = fit_of(event_id)
    assert fit.verdict == "unknown" and "no online node" in fit.summary
    with session_scope() as session:
        session.add(Node(name="pve1", status="online", maxmem=8 * GIB, mem=0))
    fit = fit_of(event_id)
    assert fit.verdict == "unknown" and "template's memory is not known" in fit.summary
    assert request_deploy(event_id).created  # nothing known against it: the deploy goes ahead


def test_a_deploy_that_does_not_fit_is_refused_unless_overridden(cluster):
    event_id = lab(cluster, 14)
    with pytest.raises(DoesNotFit, match=r"does not fit the cluster: does not fit, short by 2.4 GiB.*have an admin"):
        request_deploy(event_id, requested_by="user:teach")
    with session_scope() as session:
        assert session.execute(select(Task.id).where(Task.operation == "event.deploy")).first() is None
        assert session.get(Event, event_id).status == "scheduled"
    asked = request_deploy(event_id, requested_by="user:ops", override_capacity=True)
    assert asked.created


def _client(token: str) -> TestClient:
    from openvle.backend.app import create_app

    client = TestClient(create_app())
    client.headers.update(bearer(token))
    return client


def test_the_api_shows_capacity_to_teachers_refuses_and_lets_only_admins_override(cluster):
    _, admin = account("ops", "admin")
    _, teacher = account("teach", "teacher")
    _, student = account("short01", "student")
    _, outsider = account("outsider", "student")
    event_id = lab(cluster, 14, name="Short")

    shown = _client(teacher).get(f"/api/events/{event_id}").json()["capacity"]
    assert shown["verdict"] == "does not fit" and shown["spare"] == int(57.6 * GIB) - 4 * GIB - 56 * GIB
    assert _client(student).get(f"/api/events/{event_id}").json()["capacity"] is None

    refused = _client(teacher).post(f"/api/events/{event_id}/deploy")
    assert refused.status_code == 409 and "short by 2.4 GiB" in refused.json()["error"], refused.text
    forbidden = _client(teacher).post(f"/api/events/{event_id}/deploy", params={"override_capacity": "true"})
    assert forbidden.status_code == 403 and "only an admin" in forbidden.json()["error"], forbidden.text
    # An event a user may not see does not exist for them, override or not.
    assert _client(outsider).post(f"/api/events/{event_id}/deploy",
                                  params={"override_capacity": "true"}).status_code == 404

    done = _client(admin).post(f"/api/events/{event_id}/deploy", params={"override_capacity": "true"})
    assert done.status_code == 202, done.text
    with session_scope() as session:
        entries = session.execute(select(AuditEntry.username, AuditEntry.outcome, AuditEntry.detail).where(
            AuditEntry.action == "events.deploy").order_by(AuditEntry.id)).all()
    assert [(e.username, e.outcome) for e in entries] == [("teach", 409), ("teach", 403), ("outsider", 404),
                                                       ("ops", 202)], entries
    assert entries[-1].detail == "capacity check overridden"
    deployed = _client(teacher).get(f"/api/events/{event_id}").json()
    assert deployed["status"] == "scheduled"  # the orchestrator has not run: no worker here


def run_lifecycle(now: dt.datetime) -> dict:
    task = enqueue_operation("events.lifecycle")
    return lifecycle(TaskContext(task_id=task.id, attempt=1, max_attempts=4, queue="core_periodic"),
                     now=now.isoformat())


def capacity_emails() -> list[str]:
    with session_scope() as session:
        return sorted(session.execute(select(Email.recipient).where(Email.kind == "event_capacity")).scalars())


def test_the_lifecycle_tells_teachers_and_admins_once_and_does_not_deploy_what_does_not_fit(cluster):
    now = utcnow()
    short = lab(cluster, 14, name="Short", start_in_days=3)  # due for its deploy (7 days before)
    fine = lab(cluster, 2, name="Fine", start_in_days=40, teacher="teach2")  # far later, no overlap

    first = run_lifecycle(now)
    assert first["does_not_fit"] == [short] and first["deploy"] == []
    assert capacity_emails() == ["ops@uni.example", "teach@uni.example"]
    with session_scope() as session:
        body = session.execute(select(Email.body_text).where(Email.kind == "event_capacity")).scalars().first()
        assert session.get(Event, fine).capacity_alerted_at is None
    assert "short by 2.4 GiB" in body and "not deployed" in body

    second = run_lifecycle(now)  # the next day: still short, nobody is told twice
    assert second["does_not_fit"] == [] and capacity_emails() == ["ops@uni.example", "teach@uni.example"]

    with session_scope() as session:  # a node is added: it fits, and is deployed
        session.add(Node(name="pve4", status="online", maxmem=32 * GIB, mem=0))
    third = run_lifecycle(now)
    assert third["deploy"] == [short] and third["does_not_fit"] == []
    with session_scope() as session:
        assert session.get(Event, short).capacity_alerted_at is None  # a later shortage is told again


def test_the_cli_shows_capacity_refuses_and_overrides_with_an_audit_record(cluster, clean):
    from test_cli import cli

    event_id = lab(cluster, 14, name="Cli")
    env = clean.env(ADMIN_EMAILS="ops@uni.example")
    shown = cli(env, "event", "show", str(event_id))
    assert shown.returncode == 0 and "capacity     does not fit, short by 2.4 GiB" in shown.stdout, shown.stdout
    refused = cli(env, "event", "deploy", str(event_id))
    assert refused.returncode != 0 and "does not fit the cluster" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    done = cli(env, "event", "deploy", str(event_id), "--override-capacity")
    assert done.returncode == 0 and "deploy requested" in done.stdout, done.stderr
    with session_scope() as session:
        entries = session.execute(select(AuditEntry.outcome, AuditEntry.detail).where(
            AuditEntry.action == "cli.event.deploy").order_by(AuditEntry.id)).all()
    assert entries[0].outcome == 409 and "short by 2.4 GiB" in entries[0].detail
    assert tuple(entries[1]) == (200, "capacity check overridden")


def on_storage(template: int, maxdisk: int, mode: str = "full", storage: str = "local-lvm") -> None:
    """What node sync learns of the template's disk: its size and the storage its clones go to."""
    with session_scope() as session:
        session.execute(update(Template).where(Template.id == template).values(
            maxdisk=maxdisk, storage=storage, clone_mode=mode))


def storages(*rows: tuple) -> None:
    with session_scope() as session:
        session.add_all([NodeStorage(node=node, storage=name, shared=shared, status=status, maxdisk=size, disk=used)
                         for node, name, shared, status, size, used in rows])


def test_disk_short_while_memory_fits_does_not_fit_naming_the_disk_and_is_refused(cluster):
    _, teacher = account("teach", "teacher")
    on_storage(cluster, 32 * GIB)
    # the template's local storage on pve1 is where its clones must be; pve2's local-lvm is no help
    storages(("pve1", "local-lvm", False, "available", 200 * GIB, 2 * GIB),
             ("pve2", "local-lvm", False, "available", 400 * GIB, 0))
    event_id = lab(cluster, 5, name="Disk")
    lab(cluster, 1, name="Same", start_in_days=11)  # overlapping: its clone needs 32 GiB there too
    fit = fit_of(event_id)
    assert fit.spare > 0  # memory fits
    assert (fit.disk_per_vm, fit.disk_needed, fit.disk_usable, fit.disk_other_events, fit.disk_elsewhere) == (
        32 * GIB, 160 * GIB, 180 * GIB, 32 * GIB, 2 * GIB), fit
    assert fit.verdict == "does not fit" and fit.disk_verdict == "does not fit"
    assert fit.summary.startswith("does not fit, disk short by 14.0 GiB on local-lvm: 5 VM(s) x 32.0 GiB (full "
                                  "clone) = 160.0 GiB needed"), fit.summary
    assert "; memory fits, " in fit.summary

    with pytest.raises(DoesNotFit, match=r"disk short by 14.0 GiB on local-lvm"):
        request_deploy(event_id, requested_by="user:teach")
    shown = _client(teacher).get(f"/api/events/{event_id}").json()["capacity"]
    assert (shown["verdict"], shown["storage"], shown["disk_spare"]) == ("does not fit", "local-lvm", -14 * GIB)
    refused = _client(teacher).post(f"/api/events/{event_id}/deploy")
    assert refused.status_code == 409 and "disk short by 14.0 GiB on local-lvm" in refused.json()["error"]


def test_a_linked_clone_needs_a_share_of_the_template_s_disk(cluster, settings_env):
    settings_env(ADMIN_EMAILS="ops@uni.example", CAPACITY_LINKED_CLONE_DISK_PERCENT="25")
    on_storage(cluster, 32 * GIB, mode="linked")
    storages(("pve1", "local-lvm", False, "available", 200 * GIB, 0))
    event_id = lab(cluster, 5)
    fit = fit_of(event_id)
    assert (fit.disk_per_vm, fit.disk_needed, fit.disk_verdict) == (8 * GIB, 40 * GIB, "fits"), fit
    assert "; disk 140.0 GiB to spare on local-lvm: 5 VM(s) x 8.0 GiB (linked clone, 25% of 32.0 GiB)" in fit.summary
    on_storage(cluster, 32 * GIB, mode="full")  # the same event with full clones: all of it
    assert fit_of(event_id).disk_needed == 160 * GIB


def test_a_shared_storage_counts_once(cluster):
    on_storage(cluster, 32 * GIB, storage="ceph")
    # every node sees the same ceph pool: 100 GiB, 10 GiB used, not 200 GiB
    storages(("pve1", "ceph", True, "available", 100 * GIB, 10 * GIB),
             ("pve2", "ceph", True, "available", 100 * GIB, 10 * GIB),
             ("pve3", "ceph", True, "unknown", 0, 0))
    event_id = lab(cluster, 2)
    fit = fit_of(event_id)
    assert (fit.disk_usable, fit.disk_elsewhere, fit.disk_spare, fit.disk_verdict) == (
        90 * GIB, 10 * GIB, 16 * GIB, "fits"), fit
    short = fit_of(event_id, participants=3)
    assert short.verdict == "does not fit" and short.summary.startswith("does not fit, disk short by 16.0 GiB on ceph")


def test_an_unknown_disk_does_not_block(cluster):
    event_id = lab(cluster, 10)
    fit = fit_of(event_id)  # no node sync of the template's disk yet
    assert fit.verdict == "fits" and fit.disk_verdict == "unknown"
    assert "disk unknown: the template's disk is not known yet" in fit.summary, fit.summary
    on_storage(cluster, 500 * GIB)  # known, but its storage not seen yet
    fit = fit_of(event_id)
    assert fit.verdict == "fits" and "disk unknown: storage local-lvm of node pve1 not seen" in fit.summary
    assert request_deploy(event_id).created
