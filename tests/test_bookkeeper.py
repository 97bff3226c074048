"""The worker's bookkeeper (bookkeeper.py): the process that writes each attempt's opening and
success, with real worker processes, real Redis and the real DB."""

from __future__ import annotations

import os
import re
import signal

from rq import Queue
from rq.job import Job

from conftest import wait_for
from helpers import load_task, settled
from openvle.connections import get_redis
from openvle.enqueue import enqueue_operation


def test_a_stopping_worker_leaves_every_success_written(clean):
    """The horse hands its success over and exits; the worker must not stop before the bookkeeper
    wrote what it was handed (a burst worker's caller reads the Tasks right after)."""
    from openvle.worker import TrackingWorker

    tasks = [enqueue_operation("demo.noop") for _ in range(12)]
    worker = TrackingWorker([Queue("core_periodic", connection=get_redis())], connection=get_redis())
    worker.work(burst=True, logging_level="WARNING")

    done = [load_task(t.id) for t in tasks]
    assert [t.status for t in done] == ["success"] * 12
    assert [[(s.attempt, s.status, s.worker) for s in t.subtasks] for t in done] == [[(1, "success", worker.name)]] * 12
    assert worker.bookkeeper._process is None  # stopped with its worker: no process left behind


def test_answers_reach_the_horse_of_their_job_and_a_task_that_is_over_is_skipped(clean):
    """A horse killed before it read its answer leaves the answer in the pipe: the next horse must
    read its own, not that one. A Task cancelled meanwhile is answered SKIP, so its job does not run."""
    from openvle import controls, tracking
    from openvle.bookkeeper import Bookkeeper

    unread, mine, cancelled = (enqueue_operation("demo.noop") for _ in range(3))
    controls.cancel(cancelled.id, by="test")
    keeper = Bookkeeper()
    try:
        for task in (unread, mine, cancelled):
            assert keeper.ask_open(task.rq_job_id, "core_periodic", task.id, 1, "worker@test")
        assert keeper.answer(mine.rq_job_id) == 1  # past the answer nobody read
        assert keeper.answer(cancelled.rq_job_id) == tracking.SKIP
    finally:
        keeper.stop()
    assert [(s.attempt, s.status) for s in load_task(unread.id).subtasks] == [(1, "processing")]
    assert [(s.attempt, s.status) for s in load_task(mine.id).subtasks] == [(1, "processing")]
    assert load_task(cancelled.id).status == "cancelled" and load_task(cancelled.id).subtasks == []


def test_a_bookkeeper_killed_is_replaced_and_the_work_goes_on(start_role, clean):
    worker = start_role("worker")
    first = enqueue_operation("demo.mails", {})
    assert wait_for(lambda: settled(first.id), 60, "the first task", worker).status == "success"
    pids = re.findall(r"bookkeeper started \(pid (\d+)\)", worker.output)
    assert len(pids) == 1, worker.output[-3000:]
    os.kill(int(pids[0]), signal.SIGKILL)

    after = [enqueue_operation("demo.mails", {}) for _ in range(3)]
    done = [wait_for(lambda t=t: settled(t.id), 60, "the work after the kill", worker) for t in after]
    assert [(t.status, [s.status for s in t.subtasks]) for t in done] == [("success", ["success"])] * 3
    assert len(re.findall(r"bookkeeper started \(pid (\d+)\)", worker.output)) == 2
    assert worker.output.count("the bookkeeper is gone") == 1, worker.output[-3000:]
    assert "Traceback" not in worker.output, worker.output[-3000:]
    assert worker.proc.poll() is None
    assert Job.fetch(done[-1].rq_job_id, connection=get_redis()).get_status() == "finished"
