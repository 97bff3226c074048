"""Deploys spread over a window: an event "ready by its start" is deployed in batches sized to the
cluster's clone capacity inside DEPLOY_WINDOW_HOURS before its start, planned together with every
other such event; the API, the CLI and the periodic trigger say and do the same thing.

The numbers: batch periods of 30 min, a 2 h window (four periods), and one clone slot per node and
template (PVE_CLONE_CONCURRENCY=1) on one online node. A clone is assumed to take 600 s until one was
learned: 3 clones fit a period, so a batch holds at most 3.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

import test_events
from conftest import wait_for
from helpers import account
from openvle import pacing, spread
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import AuditEntry, DeployBatch, Event, Node, Participant, Task, User, Vm, utcnow
from openvle.enqueue import enqueue_operation
from openvle.jobs.lifecycle import deploy_batches, lifecycle
from openvle.lab_events import EventError, add_participant, create_event, create_template, ensure_user
from openvle.periodic import BY_NAME
from test_capacity import _client
from test_events import people, settled_event, start_workers

sims = test_events.sims
lab = test_events.lab

SPREAD = dict(DEPLOY_BATCH_MINUTES="30", DEPLOY_WINDOW_HOURS="2", DEPLOY_CLONE_SECONDS="600",
              PVE_CLONE_CONCURRENCY="1")


def _start(days: int = 2) -> dt.datetime:
    """A start on a batch period's edge, far enough ahead that its whole window is still to come."""
    now = utcnow()
    return dt.datetime(now.year, now.month, now.day, 10) + dt.timedelta(days=days)


def _event(template: int, n: int, start: dt.datetime, name: str, teacher: str = "teach") -> int:
    return create_event(name, template, start, start + dt.timedelta(hours=4), deploy_mode="ready_by_start",
                        participants_=people(n, name.lower().replace(" ", "")),
                        teachers=[{"username": teacher, "email": f"{teacher}@uni.example", "first_name": "Tea",
                                   "last_name": "Cher"}])


def _plan(event_id: int) -> list[tuple[dt.datetime, int, str]]:
    with session_scope() as session:
        return [(b.run_at, b.size, spread.state(b)) for b in spread.batches(session, event_id)]


@pytest.fixture
def cluster(settings_env):
    settings_env(**SPREAD)
    with session_scope() as session:
        session.add(Node(name="pve1", status="online", maxmem=64 * 1024**3, mem=0))
    return create_template("tpl", pve_vmid=9001, node="pve1")


def test_batches_are_sized_to_clone_capacity_and_two_labs_on_one_day_share_it(cluster):
    start = _start()
    early = _event(cluster, 5, start, "Early")
    h = dt.timedelta(hours=1)
    assert _plan(early) == [(start - 2 * h, 3, "planned"), (start - 1.5 * h, 2, "planned")]

    # A lab 30 min later: its window begins where the first one's second batch runs; one plan for both.
    late = _event(cluster, 5, start + 0.5 * h, "Late", teacher="teach2")
    assert _plan(early) == [(start - 2 * h, 3, "planned"), (start - 1.5 * h, 2, "planned")]
    assert _plan(late) == [(start - 1.5 * h, 1, "planned"), (start - h, 3, "planned"),
                           (start - 0.5 * h, 1, "planned")]
    with session_scope() as session:  # no period holds more clones than its capacity
        per_period = dict(session.execute(select(DeployBatch.run_at, func.sum(DeployBatch.size))
                                          .group_by(DeployBatch.run_at)).all())
    assert max(per_period.values()) <= 3, per_period

    # Clones of the template were measured at 300 s: 6 fit a batch period, and the plan follows.
    pacing.get_redis().set(pacing.CLONE_SECONDS.format(cluster), "300")
    spread.replan_now()
    assert _plan(early) == [(start - 2 * h, 5, "planned")]
    assert _plan(late) == [(start - 1.5 * h, 5, "planned")]


def test_more_than_the_window_holds_goes_with_the_last_batch_and_says_so(cluster):
    start = _start()
    crowded = _event(cluster, 14, start, "Crowded")
    h = dt.timedelta(hours=1)
    plan = _plan(crowded)
    assert [p[:2] for p in plan] == [(start - 2 * h, 3), (start - 1.5 * h, 3), (start - h, 3),
                                     (start - 0.5 * h, 5)], plan
    with session_scope() as session:
        event = session.get(Event, crowded)
        text = spread.describe(session, event, spread.batches(session, crowded))
    assert "2 participant(s) beyond the window's clone capacity" in text and "DEPLOY_WINDOW_HOURS" in text


def test_the_api_shows_batch_times_to_who_may_see_the_event_and_refuses_bad_modes(cluster):
    _, teacher = account("teach", "teacher")
    _, other_teacher = account("teach2", "teacher")
    _, student = account("lab01", "student")
    start = _start()
    event_id = _event(cluster, 4, start, "Lab")
    other = _event(cluster, 1, start + dt.timedelta(days=3), "Other", teacher="teach2")

    shown = _client(teacher).get(f"/api/events/{event_id}").json()
    assert shown["deploy_mode"] == "ready_by_start"
    assert [(b["run_at"], b["size"], b["state"]) for b in shown["deploy_batches"]] == [
        (f"{start - dt.timedelta(hours=2):%Y-%m-%dT%H:%M:%S}.000Z", 3, "planned"),
        (f"{start - dt.timedelta(hours=1.5):%Y-%m-%dT%H:%M:%S}.000Z", 1, "planned")]
    assert shown["deploy_plan"].startswith("2 batches from ") and "up to 3 clone(s) per batch" in shown["deploy_plan"]
    assert len(_client(student).get(f"/api/events/{event_id}").json()["deploy_batches"]) == 2  # a participant of it
    assert _client(other_teacher).get(f"/api/events/{event_id}").status_code == 404
    hidden = _client(other_teacher).patch(f"/api/events/{event_id}", json={"deploy_mode": "daily"})
    assert hidden.status_code == 404

    bad = _client(teacher).patch(f"/api/events/{event_id}", json={"deploy_mode": "asap"})
    assert bad.status_code == 422 and "daily" in bad.text and "ready_by_start" in bad.text, bad.text
    soon = utcnow() + dt.timedelta(minutes=10)
    near = _client(other_teacher).patch(f"/api/events/{other}", json={"start": f"{soon:%Y-%m-%dT%H:%M:%S}Z"})
    assert near.status_code == 422, near.text
    assert "DEPLOY_BATCH_MINUTES" in near.json()["error"] and "move the start later" in near.json()["error"]
    made = _client(teacher).post("/api/events", json={
        "name": "Too soon", "template": "tpl", "start": f"{soon:%Y-%m-%dT%H:%M:%S}Z",
        "end": f"{soon + dt.timedelta(hours=2):%Y-%m-%dT%H:%M:%S}Z", "deploy_mode": "ready_by_start"})
    assert made.status_code == 422 and "keep deploy_mode daily" in made.json()["error"], made.text

    daily = _client(teacher).patch(f"/api/events/{event_id}", json={"deploy_mode": "daily"})
    assert daily.status_code == 200 and daily.json()["deploy_batches"] == [] and daily.json()["deploy_plan"] is None
    with session_scope() as session:
        entry = session.execute(select(AuditEntry.username, AuditEntry.detail).where(
            AuditEntry.action == "events.update", AuditEntry.outcome == 200)).all()
    assert ("teach", "changed deploy_mode (deploy_mode daily)") in entry, entry


def _run_trigger(now: dt.datetime) -> dict:
    task = enqueue_operation("events.deploy_batches")
    return deploy_batches(TaskContext(task_id=task.id, attempt=1, max_attempts=4, queue="core_periodic"),
                          now=now.isoformat())


def _vm_participants(event_id: int) -> list[str]:
    with session_scope() as session:
        return sorted(session.execute(select(User.username).join(Vm, Vm.user_id == User.id).where(
            Vm.event_id == event_id, Vm.vmid.is_not(None))).scalars())


def _clones(event_id: int) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Task).where(
            Task.operation == "vm.clone", Task.event_id == event_id)).scalar()


def test_the_trigger_deploys_exactly_the_due_batch_catches_up_and_late_people_join_the_last(lab, start_role,
                                                                                         settings_env):
    settings_env(**{**lab["env"], **SPREAD})
    assert BY_NAME["deploy-batches"].operation == "events.deploy_batches"  # cron asks every minute
    workers = start_workers(start_role, lab)
    template = create_template("ubuntu-shared", pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
    start = _start()
    event_id = create_event("Spread Lab", template, start, start + dt.timedelta(hours=4), participants_=people(4),
                            teachers=people(1, "teacher"), deploy_mode="ready_by_start")
    h = dt.timedelta(hours=1)
    assert [p[:2] for p in _plan(event_id)] == [(start - 2 * h, 3), (start - 1.5 * h, 1)]

    # The daily lifecycle leaves it to its batches; before its window the trigger asks for nothing.
    ctx = TaskContext(task_id=enqueue_operation("events.lifecycle").id, attempt=1, max_attempts=4,
                      queue="core_periodic")
    assert lifecycle(ctx, now=(start - 3 * h).isoformat())["deploy"] == []
    assert _run_trigger(start - 2 * h - dt.timedelta(minutes=1))["requested"] == []

    first = _run_trigger(start - 2 * h + dt.timedelta(minutes=1))["requested"]
    assert [(a["batch"], a["final"]) for a in first] == [(1, False)]
    wait_for(lambda: settled_event(event_id, "scheduled") and _plan(event_id)[0][2] == "done", 120,
             "the first batch", workers[0], interval=1)
    assert _vm_participants(event_id) == ["student01", "student02", "student03"]
    assert _run_trigger(start - 2 * h + dt.timedelta(minutes=2))["requested"] == []  # nothing twice
    assert _clones(event_id) == 3

    # Someone joins late: they land in the next batch.
    late = ensure_user("student05", "student05@uni.example", "Student", "05")
    add_participant(event_id, late)
    spread.replan_now(start - 2 * h + dt.timedelta(minutes=3))
    with session_scope() as session:
        assert session.execute(select(Participant.deploy_batch).where(Participant.user_id == late)).scalar() is None
    assert [p[1:] for p in _plan(event_id)] == [(3, "done"), (2, "planned")]

    # The trigger missed the second batch's time (no scheduler for an hour): the next run makes it up.
    last = _run_trigger(start - h + dt.timedelta(minutes=1))["requested"]
    assert [(a["batch"], a["final"]) for a in last] == [(2, True)]
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the last batch",
                     workers[0], interval=1)
    assert event.status == "deployed", event.status_reason
    assert _vm_participants(event_id) == ["student01", "student02", "student03", "student04", "student05"]
    assert _clones(event_id) == 5  # each VM cloned once
    assert _run_trigger(start - h + dt.timedelta(minutes=2))["requested"] == []
    assert [p[1:] for p in _plan(event_id)] == [(3, "done"), (2, "done")]
    with session_scope() as session:
        deploys = session.execute(select(Task.id).where(Task.operation == "event.deploy",
                                                          Task.target == f"event:{event_id}")).scalars().all()
    assert len(deploys) == 2


def test_the_cli_sets_the_mode_shows_the_batches_and_names_a_bad_one(cluster, clean):
    from test_cli import cli as run_cli

    env = clean.env(**SPREAD)

    def cli(*args):
        return run_cli(env, *args)

    start = _start()
    event_id = create_event("Cli Lab", cluster, start, start + dt.timedelta(hours=4), participants_=people(2),
                            status="draft")
    done = cli("event", "deploy-mode", str(event_id), "ready_by_start")
    assert done.returncode == 0, done.stderr
    scheduled = cli("event", "show", str(event_id))
    assert "ready by its start" in scheduled.stdout and "batch times are planned once it is scheduled" in \
        scheduled.stdout, scheduled.stdout
    with session_scope() as session:
        session.get(Event, event_id).status = "scheduled"
    spread.replan_now()
    shown = cli("event", "show", str(event_id))
    assert f"batch 1      {start - dt.timedelta(hours=2):%Y-%m-%d %H:%M} UTC: 2 participant(s), planned" in \
        shown.stdout, shown.stdout
    bad = cli("event", "deploy-mode", str(event_id), "soon")
    assert bad.returncode == 2 and "daily" in bad.stderr
    with session_scope() as session:
        entry = session.execute(select(AuditEntry.detail).where(AuditEntry.action == "cli.event.deploy_mode")).scalar()
    assert entry == "deploy_mode ready_by_start"


def test_a_draft_cannot_be_made_ready_by_a_start_too_near(cluster):
    soon = utcnow() + dt.timedelta(minutes=20)
    with pytest.raises(EventError, match="at least one whole batch period"):
        create_event("Near", cluster, soon, soon + dt.timedelta(hours=1), deploy_mode="ready_by_start")


def test_the_event_page_shows_the_plan_and_its_live_box_does_not_plan_again(cluster, clean):
    """The live box asks every second while the page is open: planning every spread event each time
    would cost the database for nothing it shows."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event as sql_event

    from openvle.backend.app import create_app
    from openvle.db.engine import get_engine
    from test_pages_http import log_in

    browser = TestClient(create_app())
    log_in(browser, "teach", "teacher")
    event_id = _event(cluster, 4, _start(), "Lab")
    asked: list[str] = []

    def note(conn, cursor, statement, *args):
        asked.append(statement)

    sql_event.listen(get_engine(), "before_cursor_execute", note)
    try:
        page = browser.get(f"/events/{event_id}")
        planned = sum("deploy_batches" in s for s in asked)
        asked.clear()
        live = browser.get(f"/events/{event_id}/live")
    finally:
        sql_event.remove(get_engine(), "before_cursor_execute", note)
    assert page.status_code == 200 and 'id="deploy-plan"' in page.text and planned > 0
    assert live.status_code == 200 and not any("deploy_batches" in s for s in asked), asked
