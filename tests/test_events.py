"""Events end to end: every role a separate process, every outside system a simulator over its
real protocol (Proxmox over HTTPS, Guacamole and Moodle over HTTP, SMTP), real Redis and DB."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import func, select

from conftest import wait_for
from helpers import sandbox_env, settled
from openvle.db.engine import session_scope
from openvle.db.models import Email, Event, Participant, Task, User, Vm, utcnow
from openvle.lab_events import create_event, create_template, progress, request_archive, request_deploy
from sandbox.guacamole import GuacamoleSimulator
from sandbox.mail import MailCatcher
from sandbox.moodle import MoodleSimulator
from sandbox.proxmox import ProxmoxSimulator
from sandbox.runner import seed_proxmox

FAST = {"linked_clone": 1.0, "full_clone": 3.0, "start": 0.3, "stop": 0.3, "shutdown": 0.3, "reset": 0.2,
        "reboot": 0.3, "destroy": 0.3, "migrate": 0.5}


@pytest.fixture(scope="module")
def sims():
    token = str(uuid.uuid4())
    started = {
        "pve": ProxmoxSimulator(host="127.0.0.1", port=0, user="openvle@pve", token_name="tests", token_value=token,
                                auth_fail_delay=0).start(),
        "guac": GuacamoleSimulator(host="127.0.0.1", port=0, username="guacadmin", password="guac-pass-1").start(),
        "moodle": MoodleSimulator(host="127.0.0.1", port=0, token="moodle-token-1", duplicate_seconds=0.5).start(),
        "mail": MailCatcher(host="127.0.0.1", smtp_port=0, http_port=0).start(),
    }
    yield started
    for name in ("pve", "guac", "moodle", "mail"):
        started[name].stop()


@pytest.fixture
def lab(sims, settings_env):
    pve, guac, moodle, mail = sims["pve"], sims["guac"], sims["moodle"], sims["mail"]
    pve.state.reset()
    seed_proxmox(pve.state)
    pve.state.configure(durations=FAST, storage_concurrency=4, lock_wait=0.5)
    guac.state.reset()
    moodle.state.reset()
    moodle.state.seed()
    mail.state.reset()
    env = sandbox_env(sims)
    settings_env(**env)
    sims["env"] = env
    return sims


def start_workers(start_role, lab):
    return [start_role(role, **lab["env"]) for role in ("worker", "worker-vm-clone")]


def people(n: int, prefix: str = "student") -> list[dict]:
    return [{"username": f"{prefix}{i:02d}", "email": f"{prefix}{i:02d}@uni.example", "first_name": prefix.title(),
             "last_name": f"{i:02d}"} for i in range(1, n + 1)]


def make_event(n: int, name: str = "Networks Lab", start_in_days: float = 3, length_days: float = 1) -> int:
    template = create_template("ubuntu-shared", pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
    start = utcnow() + dt.timedelta(days=start_in_days)
    return create_event(name, template, start, start + dt.timedelta(days=length_days), participants_=people(n),
                        teachers=people(1, "teacher"))


def event_row(event_id: int) -> Event:
    with session_scope() as session:
        return session.get(Event, event_id)


def settled_event(event_id: int, *statuses: str):
    event = event_row(event_id)
    return event if event.status in statuses and event.active_task_id is None else None


def ours_in_pve(pve) -> list[int]:
    return sorted(int(v["vmid"]) for v in pve.state.snapshot()["vms"] if "openvle" in str(v.get("tags") or ""))


@pytest.mark.slow
def test_an_event_of_20_deploys_completely_under_faults_and_archives_to_nothing(lab, start_role):
    pve, guac, moodle, mail = lab["pve"], lab["guac"], lab["moodle"], lab["mail"]
    workers = start_workers(start_role, lab)
    event_id = make_event(20)
    # An exact plan: every 20th request to Proxmox and Guacamole fails, every 4th of the few to Moodle.
    for sim, every in ((pve, 20), (guac, 20), (moodle, 4)):
        sim.state.set_faults(error_every=every)

    request_deploy(event_id)
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 300,
                     "the deploy", workers[0], interval=1)

    assert event.status == "deployed", event.status_reason
    assert event.deployed_at is not None and event.moodle_course_id is not None
    with session_scope() as session:
        vms = list(session.execute(select(Vm).where(Vm.event_id == event_id)).scalars())
    assert len(vms) == 20 and all(v.state == "ready" and v.access_link for v in vms)
    assert ours_in_pve(pve) == sorted(v.vmid for v in vms)
    assert all(v["status"] == "running" for v in pve.state.snapshot()["vms"] if v["vmid"] in {x.vmid for x in vms})
    snapshot = guac.state.snapshot()
    assert len(snapshot["connections"]) == 20 and len(snapshot["sharingProfiles"]) == 20
    assert {u["username"] for u in snapshot["users"]} >= {f"student{i:02d}" for i in range(1, 21)} | {"teacher01"}
    course = next(c for c in moodle.state.snapshot()["courses"] if c["id"] == event.moodle_course_id)
    assert sorted(e["roleid"] for e in course["enrolments"]) == [3] + [5] * 20
    access_mails = [m for m in mail.state.messages() if m["subject"] == "Your lab for Networks Lab is ready"]
    assert sorted(m["rcpt_tos"][0] for m in access_mails) == [f"student{i:02d}@uni.example" for i in range(1, 21)]
    shown = progress(event_id)
    assert shown["percent"] == 100 and set(shown["participants"]["student07"].values()) == {"done"}

    assert all(sim.state.error_plan.hits > 0 for sim in (pve, guac, moodle)), "every plan should have hit"
    for sim in (pve, guac, moodle):
        sim.state.set_faults(error_every=0)
    request_archive(event_id)
    event = wait_for(lambda: settled_event(event_id, "archived", "failed"), 300, "the archive", workers[0],
                     interval=1)

    assert event.status == "archived", event.status_reason
    assert ours_in_pve(pve) == []
    snapshot = guac.state.snapshot()
    assert snapshot["connections"] == [] and snapshot["sharingProfiles"] == []
    assert {u["username"] for u in snapshot["users"]} == {"guacadmin"}  # no other event needs anyone
    course = next(c for c in moodle.state.snapshot()["courses"] if c["id"] == event.moodle_course_id)
    assert course["visible"] == 0  # MOODLE_ARCHIVE_ACTION=hide
    assert len([m for m in mail.state.messages() if m["subject"] == "Networks Lab has ended"]) == 20
    with session_scope() as session:
        assert set(session.execute(select(Vm.state).where(Vm.event_id == event_id)).scalars()) == {"deleted"}


def test_duplicate_triggers_create_nothing_twice(lab, start_role):
    workers = start_workers(start_role, lab)
    event_id = make_event(3, name="Double Click")
    results = []
    threads = [threading.Thread(target=lambda: results.append(request_deploy(event_id, requested_by="teacher")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    from openvle.enqueue import enqueue_operation

    enqueue_operation("events.lifecycle")  # the scheduler too

    assert len({r.task_id for r in results}) == 1 and sum(r.created for r in results) == 1
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the deploy",
                     workers[0], interval=1)
    assert event.status == "deployed", event.status_reason
    with session_scope() as session:
        deploys = session.execute(select(func.count()).select_from(Task).where(
            Task.operation == "event.deploy", Task.target == f"event:{event_id}")).scalar()
        clones = session.execute(select(func.count()).select_from(Task).where(Task.operation == "vm.clone")).scalar()
        vms = session.execute(select(func.count()).select_from(Vm).where(Vm.event_id == event_id)).scalar()
    assert deploys == 1 and clones == 3 and vms == 3
    assert len(ours_in_pve(lab["pve"])) == 3


def test_a_permanent_failure_leaves_deployed_with_failures_and_retry_completes_only_it(lab, start_role):
    mail = lab["mail"]
    mail.state.reject(["student02@uni.example"])
    workers = start_workers(start_role, lab)
    event_id = make_event(3, name="Flaky Mail")

    request_deploy(event_id)
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the deploy",
                     workers[0], interval=1)

    assert event.status == "deployed_with_failures"
    assert event.status_reason.startswith("student02: email failed:") and "550" in event.status_reason
    assert progress(event_id)["participants"]["student02"]["email"] == "failed"
    with session_scope() as session:
        before = session.execute(select(func.max(Task.id))).scalar()

    mail.state.reject([])
    retry = request_deploy(event_id, requested_by="teacher")
    wait_for(lambda: settled(retry.task_id), 120, "the retry", workers[0], interval=1)
    event = event_row(event_id)

    assert retry.created and event.status == "deployed", event.status_reason
    with session_scope() as session:
        new = session.execute(select(Task.operation, Task.target).where(Task.id > before)).all()
    # Nothing else re-ran (student02's course email was refused as well: it goes again too).
    expected = ["event.access_email", "event.course_email", "event.deploy", "event.enrol", "event.mark_deployed"]
    assert sorted(op for op, _ in new) == expected, new
    assert [t for op, t in new if op == "event.access_email"][0].endswith("/email")
    to_student02 = sorted(m["subject"] for m in mail.state.messages() if m["rcpt_tos"] == ["student02@uni.example"])
    assert to_student02 == ["Your course for Flaky Mail", "Your lab for Flaky Mail is ready"]  # each once
    assert len(ours_in_pve(lab["pve"])) == 3


def test_the_lifecycle_picks_exactly_the_right_events_and_notices_go_out_once(lab, start_role, settings_env):
    from openvle.context import TaskContext
    from openvle.enqueue import enqueue_operation
    from openvle.jobs.lifecycle import lifecycle

    settings_env(**lab["env"], EVENTS_START_PREP_TIME_DAYS="7", EVENTS_END_PREP_TIME_DAYS="7",
                 EVENTS_NOTICE_DAYS="3")
    now = dt.datetime(2027, 3, 1, 1, 0)
    template = create_template("t", pve_vmid=9001, node="pve1")

    def event(name, start_days, end_days, status="scheduled"):
        # Made as drafts, then given their state: the lifecycle's `now` is fixed, the real clock is not.
        eid = create_event(name, template, now + dt.timedelta(days=start_days), now + dt.timedelta(days=end_days),
                           participants_=people(2, name.lower().replace(" ", "")), status="draft")
        with session_scope() as session:
            session.get(Event, eid).status = status
        return eid

    soon = event("Soon", 6, 7)  # starts within 7 days: deploy
    later = event("Later", 8, 9)  # not yet
    running = event("Running", -1, 1)  # started already, not ended: deploy (late is better than never)
    draft = event("Draft", 2, 3, status="draft")  # a draft is never deployed by the lifecycle
    ended_long_ago = event("Old", -20, -10, status="deployed")  # ended 10 days ago: archive
    ended_recently = event("Recent", -5, -3, status="deployed")  # within the grace: keep
    event("Notice", 2, 3, status="deployed")  # deployed, starts in 2 days: notices
    too_early = event("Early", 5, 6, status="deployed")  # deployed, starts in 5 days: no notice yet

    runs = []
    for _ in range(2):  # the same day twice changes nothing the second time
        task = enqueue_operation("events.lifecycle")
        runs.append(lifecycle(TaskContext(task_id=task.id, attempt=1, max_attempts=4, queue="core_periodic"),
                              now=now.isoformat()))

    assert sorted(runs[0]["deploy"]) == sorted([soon, running]) and runs[0]["archive"] == [ended_long_ago]
    assert len(runs[0]["notices"]) == 2 and runs[1]["notices"] == []
    with session_scope() as session:
        deploys = sorted(session.execute(select(Task.target).where(Task.operation == "event.deploy")).scalars())
        archives = list(session.execute(select(Task.target).where(Task.operation == "event.archive")).scalars())
        notices = session.execute(select(Email.recipient).where(Email.kind == "event_starts_soon")).scalars().all()
        noticed = session.execute(select(func.count()).select_from(Participant).where(
            Participant.notice_sent_at.is_not(None))).scalar()
    assert deploys == sorted([f"event:{soon}", f"event:{running}"]) and archives == [f"event:{ended_long_ago}"]
    assert sorted(notices) == ["notice01@uni.example", "notice02@uni.example"] and noticed == 2
    for untouched in (later, draft, ended_recently, too_early):
        assert event_row(untouched).status in ("scheduled", "draft", "deployed")
    with session_scope() as session:
        subject = session.execute(select(Email.subject).where(Email.kind == "event_starts_soon")).scalars().first()
    assert subject == "Notice starts in 2 days"


def test_adding_and_removing_a_participant_of_a_deployed_event(lab, start_role):
    from openvle.lab_events import add_participant, ensure_user, remove_participant

    workers = start_workers(start_role, lab)
    event_id = make_event(2, name="Growing")
    request_deploy(event_id)
    wait_for(lambda: settled_event(event_id, "deployed"), 120, "the deploy", workers[0], interval=1)

    newcomer = ensure_user("late01", "late01@uni.example", "Late", "Comer")
    add_participant(event_id, newcomer)
    wait_for(lambda: progress(event_id)["participants"].get("late01", {}).get("email") == "done", 120,
             "the newcomer's access", workers[0], interval=1)
    assert len(ours_in_pve(lab["pve"])) == 3

    with session_scope() as session:
        leaver = session.execute(select(User.id).where(User.username == "student01")).scalar_one()
    remove_participant(event_id, leaver)
    wait_for(lambda: len(ours_in_pve(lab["pve"])) == 2, 120, "the leaver's VM to go", workers[0], interval=1)
    usernames = {u["username"] for u in lab["guac"].state.snapshot()["users"]}
    wait_for(lambda: "student01" not in {u["username"] for u in lab["guac"].state.snapshot()["users"]}, 60,
             "the leaver's account to go", workers[0])
    assert "late01" in usernames and event_row(event_id).status == "deployed"
