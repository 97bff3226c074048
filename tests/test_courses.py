"""Moodle end to end: the real REST client against the Moodle simulator, workers, DB."""

from __future__ import annotations

import pytest

from conftest import wait_for
from helpers import load_task, retry_now, settled
from openvle.db.engine import session_scope
from openvle.db.models import User
from openvle.enqueue import enqueue_operation
from sandbox.moodle import MoodleSimulator

TOKEN = "moodle-token-99a1f"


@pytest.fixture(scope="module")
def moodle_server():
    server = MoodleSimulator(host="127.0.0.1", port=0, token=TOKEN, duplicate_seconds=0.5)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def moodle(moodle_server, settings_env):
    moodle_server.state.reset()
    moodle_server.state.seed()
    env = {"MOODLE_URL": moodle_server.url, "MOODLE_TOKEN": TOKEN, "MOODLE_CATEGORY_ID": "2"}
    settings_env(**env)
    moodle_server.env = env
    return moodle_server


def users(*names: str) -> list[int]:
    with session_scope() as session:
        rows = [User(username=n, email=f"{n}@example.org", first_name=n.title(), last_name="Test") for n in names]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def run(worker, operation: str, **params):
    task = enqueue_operation(operation, params)
    return wait_for(lambda: settled(task.id), 30, operation, worker)


def courses(moodle) -> list[dict]:
    return moodle.state.snapshot()["courses"]


def test_deploy_twice_makes_one_course_and_enrol_twice_enrols_once(moodle, start_role):
    worker = start_role("worker", **moodle.env)
    students, teachers = users("ada", "alan"), users("grace")
    deploy = {"template_course_id": 2, "shortname": "netlab-2026", "fullname": "Networks Lab 2026"}

    first = run(worker, "moodle.deploy_course", **deploy)
    second = run(worker, "moodle.deploy_course", **deploy)

    assert first.status == second.status == "success"
    course_id = first.result["course_id"]
    assert second.result["course_id"] == course_id and first.result["created"] and not second.result["created"]
    assert first.result["url"] == f"{moodle.url}/course/view.php?id={course_id}"
    made = [c for c in courses(moodle) if c["shortname"] == "netlab-2026"]
    assert len(made) == 1 and made[0]["categoryid"] == 2

    for _ in range(2):
        done = run(worker, "moodle.enrol", course_id=course_id, student_ids=students, teacher_ids=teachers)
        assert done.status == "success", done.error
    snapshot = moodle.state.snapshot()
    course = next(c for c in snapshot["courses"] if c["id"] == course_id)
    by_email = {u["email"]: u for u in snapshot["users"]}
    roles = {by_email_id(by_email, e["userid"]): e["roleid"] for e in course["enrolments"]}
    assert roles == {"ada@example.org": 5, "alan@example.org": 5, "grace@example.org": 3}
    assert sum(1 for u in snapshot["users"] if u["email"].endswith("@example.org")) == 3  # created once


def by_email_id(by_email: dict, user_id: int) -> str:
    return next(email for email, u in by_email.items() if u["id"] == user_id)


@pytest.mark.parametrize("action", ["hide", "delete", "keep"])
def test_archive_per_action(moodle, start_role, action):
    worker = start_role("worker", **moodle.env)
    people = users("ada")
    course_id = run(worker, "moodle.deploy_course", template_course_id=2, shortname=f"arch-{action}",
                    fullname="Archive me").result["course_id"]
    run(worker, "moodle.enrol", course_id=course_id, student_ids=people)

    done = run(worker, "moodle.archive", course_id=course_id, user_ids=people, action=action)

    assert done.status == "success", done.error
    course = next((c for c in courses(moodle) if c["id"] == course_id), None)
    if action == "hide":
        assert course["visible"] == 0
    elif action == "delete":
        assert course is None
    else:
        assert course["visible"] == 1 and course["enrolments"] == []


def test_permanent_errors_fail_at_once(moodle, start_role, settings_env):
    worker = start_role("worker", **moodle.env)
    missing = run(worker, "moodle.deploy_course", template_course_id=999, shortname="nope", fullname="Nope")
    assert missing.status == "error" and len(missing.subtasks) == 1 and "invalidcourseid" not in missing.error
    assert "999" in missing.error or "course" in missing.error.lower()

    assert worker.stop() == 0  # the next job must go to the worker with the wrong token
    env = {**moodle.env, "MOODLE_TOKEN": "wrong-token-7731"}
    settings_env(**env)
    bad = start_role("worker", **env)
    denied = run(bad, "moodle.enrol", course_id=2, student_ids=users("eve"))
    assert denied.status == "error" and len(denied.subtasks) == 1 and "check MOODLE_TOKEN" in denied.error
    assert "wrong-token-7731" not in denied.error + bad.output and TOKEN not in worker.output


def test_a_transient_fault_is_retried_and_succeeds(moodle, start_role):
    worker = start_role("worker", **moodle.env)
    moodle.state.set_faults(error_rate=1.0)
    task = enqueue_operation("moodle.deploy_course", {"template_course_id": 2, "shortname": "flaky",
                                                      "fullname": "Flaky"})
    wait_for(lambda: any(s.status == "error" for s in load_task(task.id).subtasks), 30, "a failed attempt", worker)
    moodle.state.set_faults(error_rate=0.0)
    assert 9 <= retry_now(task.id, attempt=1) <= 15  # the queue's first wait, 10 s, made due now
    done = wait_for(lambda: settled(task.id), 40, "the retry", worker)
    assert done.status == "success" and len(done.subtasks) == 2
    assert [c["shortname"] for c in courses(moodle)].count("flaky") == 1
