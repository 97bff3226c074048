"""Issue 12: nothing stuck, nothing lost, nothing twice: the event engine's failure paths.

Each test here failed on the code before its fix. Roles run as processes where the bug needs the
whole flow; planning and recovery are called directly where that shows the bug exactly.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

import test_events
from conftest import wait_for
from openvle.db.engine import session_scope
from openvle.db.models import Event, Task, utcnow
from openvle.events import create_template, progress, request_deploy
from test_events import event_row, people, settled_event, start_workers

sims, lab = test_events.sims, test_events.lab  # the simulators and the env pointing at them (fixtures)


def _mails_to(mail, subject: str) -> list[str]:
    return sorted(m["rcpt_tos"][0] for m in mail.state.messages() if m["subject"] == subject)


# --- bug 1: lab access never waits on Moodle ------------------------------------------------------------


def test_access_emails_go_out_when_the_course_step_fails_and_the_course_follows_in_its_own_email(lab, start_role):
    from openvle.events import create_event

    mail = lab["mail"]
    workers = start_workers(start_role, lab)
    # A template course that does not exist in Moodle: the course step fails for good.
    template = create_template("bad-course", pve_vmid=9001, node="pve1", moodle_course_id=424242)
    start = utcnow() + dt.timedelta(days=3)
    event_id = create_event("Moodle Down", template, start, start + dt.timedelta(days=1), participants_=people(3))

    request_deploy(event_id)
    event = wait_for(lambda: settled_event(event_id, "deployed", "deployed_with_failures"), 120, "the deploy",
                     workers[0], interval=1)

    assert event.status == "deployed_with_failures" and event.status_reason.startswith("course: course failed")
    assert _mails_to(mail, "Your lab for Moodle Down is ready") == [f"student0{i}@uni.example" for i in (1, 2, 3)]
    assert _mails_to(mail, "Your course for Moodle Down") == []
    assert progress(event_id)["participants"]["student01"]["email"] == "done"

    # The course fixed: "retry failed" makes the course and sends only the course emails.
    with session_scope() as session:
        session.get(Event, event_id).template.moodle_course_id = 2
    retry = request_deploy(event_id, requested_by="teacher")
    wait_for(lambda: _final(retry.task_id), 120, "the retry", workers[0], interval=1)
    event = event_row(event_id)
    assert retry.created and event.status == "deployed", event.status_reason
    assert _mails_to(mail, "Your course for Moodle Down") == [f"student0{i}@uni.example" for i in (1, 2, 3)]
    assert len(_mails_to(mail, "Your lab for Moodle Down is ready")) == 3  # not again


def _final(task_id: int) -> Task | None:
    with session_scope() as session:
        task = session.get(Task, task_id)
        return task if task.status in ("success", "error", "cancelled") else None


def _count(model, *where) -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar()
