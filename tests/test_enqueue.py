"""The one de-duplication scheme: at most one active Task of an operation on a subject (enqueue.one_active)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from openvle import targets
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskStatus
from openvle.enqueue import enqueue_once, enqueue_operation, one_active


def finish(task_id: int) -> None:
    with session_scope() as session:
        session.execute(update(Task).where(Task.id == task_id).values(status=TaskStatus.SUCCESS))


def test_the_active_task_on_a_target_is_found_under_the_subjects_lock(clean):
    deploy = enqueue_operation("event.deploy", {"event_id": 4}, target=targets.event(4))
    enqueue_operation("event.archive", {"event_id": 4}, target=targets.event(4))  # another operation
    enqueue_operation("event.deploy", {"event_id": 5}, target=targets.event(5))  # another subject

    with one_active("event.deploy", target=targets.event(4)) as running:
        assert running is not None and running.id == deploy.id
        assert get_redis().exists("openvle:event:4:request")  # the name the requests always used
    assert not get_redis().exists("openvle:event:4:request")

    finish(deploy.id)
    with one_active("event.deploy", target=targets.event(4)) as running:
        assert running is None


def test_a_vm_is_looked_up_by_its_id_whatever_the_target(clean):
    # A deploy's start of VM 12 (a participant's step) is what a click on "start" finds.
    step = enqueue_operation("vm.start", {"vm_id": 12}, target=targets.participant(4, 7, "start"))

    with one_active("vm.start", vm_id=12) as running:
        assert running is not None and running.id == step.id
        assert get_redis().exists("openvle:vm:12:request")
    with one_active("vm.stop", vm_id=12) as running:
        assert running is None


def test_the_lock_is_let_go_when_the_callers_check_refuses(clean):
    with pytest.raises(RuntimeError, match="refused"), one_active("vm.start", vm_id=3):
        raise RuntimeError("refused")
    assert not get_redis().exists("openvle:vm:3:request")


def test_enqueue_once_queues_a_step_once_and_again_after_it_ended(clean):
    target = targets.participant(4, 7, "clone")
    first = enqueue_once("vm.clone", {"vm_id": 1}, target=target)
    assert enqueue_once("vm.clone", {"vm_id": 1}, target=target).id == first.id
    assert get_redis().keys("openvle:*:request") == []  # planners hold their own plan lock
    finish(first.id)
    assert enqueue_once("vm.clone", {"vm_id": 1}, target=target).id != first.id


def test_a_subject_is_one_target_or_one_vm(clean):
    for subject in ({}, {"target": targets.event(1), "vm_id": 2}):
        with pytest.raises(ValueError, match="exactly one subject"), one_active("event.deploy", **subject):
            pass


def test_a_step_asked_at_the_front_goes_ahead_of_the_queued_work_when_its_parent_succeeds(clean):
    """An access email waits for its participant's access; when that succeeds, RQ queues it ahead of
    the course emails already waiting (RQ's own dependents path, as the worker runs it)."""
    from rq import Queue
    from rq.job import Job

    redis = get_redis()
    parent = enqueue_operation("demo.noop")
    bulk = [enqueue_operation("demo.noop") for _ in range(3)]  # already waiting on the same queue
    urgent = enqueue_once("demo.noop", target="urgent", depends_on=[parent], at_front=True)
    later = enqueue_once("demo.noop", target="later", depends_on=[parent])
    queue = Queue(parent.queue, connection=redis)
    queue.remove(parent.rq_job_id)  # a worker took the parent...
    job = Job.fetch(parent.rq_job_id, connection=redis)
    job.set_status("finished")  # ...and it succeeded
    queue.enqueue_dependents(job)

    ids = queue.job_ids
    assert ids[0] == urgent.rq_job_id and ids[-1] == later.rq_job_id
    assert ids[1:4] == [t.rq_job_id for t in bulk]


def test_a_marker_wakes_its_orchestrator_instead_of_leaving_it_to_its_next_look(clean):
    """The orchestrator checks back in FOLLOW_EVERY s (scheduled in RQ); the last step's marker moves
    it onto its queue at once, so the event is released as the deploy ends."""
    import datetime as dt

    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    from openvle.db.models import Event
    from openvle.jobs.lab_events import FOLLOW_EVERY, wake_orchestrator
    from test_events import make_event

    event_id = make_event(1)
    orchestrator = enqueue_operation("demo.noop")
    queue = Queue(orchestrator.queue, connection=get_redis())
    queue.remove(orchestrator.rq_job_id)  # it ran once and now waits for its next look:
    schedule = ScheduledJobRegistry(queue=queue)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=FOLLOW_EVERY)
    schedule.schedule(queue.fetch_job(orchestrator.rq_job_id), due)
    with session_scope() as session:
        session.execute(update(Event).where(Event.id == event_id).values(active_task_id=orchestrator.id))

    wake_orchestrator(event_id)

    assert orchestrator.rq_job_id not in schedule and queue.job_ids[0] == orchestrator.rq_job_id

