"""Each role started as its own process by SERVICE_ROLE, as compose starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from rq import Queue, Worker

from conftest import ROOT, WAIT_SCALE, wait_for
from helpers import load_task, settled
from openvle.enqueue import enqueue_operation
from openvle.queues import QUEUE_NAMES, ROLE_QUEUES
from openvle.roles import ROLES


def test_missing_or_unknown_role_exits_2_listing_the_valid_roles(clean):
    valid = ", ".join(ROLES)
    for role, said in ((None, "SERVICE_ROLE is not set"), ("wroker", "unknown SERVICE_ROLE 'wroker'")):
        env = clean.env()
        if role:
            env["SERVICE_ROLE"] = role
        result = subprocess.run([sys.executable, "-m", "openvle"], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=60 * WAIT_SCALE)
        assert result.returncode == 2
        assert result.stderr.strip() == f"openvle: {said}: choose one of {valid}"


def test_each_worker_role_listens_on_exactly_its_queues_in_order(start_role, clean):
    started = {role: start_role(role) for role in ROLE_QUEUES}
    workers = {w.name: w for w in Worker.all(connection=clean.redis)}
    for role, proc in started.items():
        (name,) = [n for n in workers if n.endswith(f".{proc.proc.pid}")]
        assert name.startswith(f"{role}@")  # `rq info` tells who is who
        assert tuple(workers[name].queue_names()) == ROLE_QUEUES[role]


def test_a_worker_role_takes_only_its_own_queues(start_role, clean):
    tasks = {queue: enqueue_operation(f"demo.{queue}") for queue in QUEUE_NAMES}

    worker = start_role("worker")
    mine = ROLE_QUEUES["worker"]
    for queue in mine:
        wait_for(lambda q=queue: settled(tasks[q].id), 20, f"the {queue} task", worker)
    for queue in set(QUEUE_NAMES) - set(mine):
        assert load_task(tasks[queue].id).status == "queued"

    clone = start_role("worker-vm-clone")
    wait_for(lambda: settled(tasks["pve_vm_clone"].id), 20, "the clone task", clone)
    assert load_task(tasks["pve_periodic"].id).status == "queued"

    periodic = start_role("worker-periodic")
    wait_for(lambda: settled(tasks["pve_periodic"].id), 20, "the periodic task", periodic)
    for queue, task in tasks.items():
        done = load_task(task.id)
        assert done.status == "success"
        expected_role = next(r for r, qs in ROLE_QUEUES.items() if r != "worker-all" and queue in qs)
        assert done.subtasks[0].worker.startswith(f"{expected_role}@")


def test_sigterm_during_a_job_lets_it_finish_then_exits_0(start_role, clean):
    worker = start_role("worker")
    task = enqueue_operation("demo.moodle", {"duration": 3})
    wait_for(lambda: load_task(task.id).status == "processing", 15, "the job to start", worker)

    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=30 * WAIT_SCALE)

    assert code == 0, worker.output[-2000:]
    done = load_task(task.id)
    assert done.status == "success"
    assert [(s.attempt, s.status) for s in done.subtasks] == [(1, "success")]
    assert "warm shut down requested" in worker.output


def test_a_stopping_worker_does_not_wait_a_minute_for_its_command_thread(clean):
    """RQ's stop/kill command thread sleeps up to 60 s in a read and is woken by the unsubscribe
    reply; when it has read that reply before being told to stop, it waits 60 s for a new
    subscription. Here that order is made certain; the worker must still let go at once."""
    from openvle.connections import get_redis
    from openvle.worker import TrackingWorker

    redis = get_redis()
    worker = TrackingWorker([Queue("stop-test", connection=redis)], connection=redis, name="stop-test")
    worker.subscribe()
    worker.pubsub.unsubscribe()
    wait_for(lambda: not worker.pubsub.subscribed, 10, "the command thread to read the reply")

    let_go = threading.Event()
    threading.Thread(target=lambda: (worker.unsubscribe(), let_go.set()), daemon=True).start()

    assert let_go.wait(15 * WAIT_SCALE), "stopping waited for the command thread's 60 s sleep"


def test_worker_waits_for_the_schema_and_says_why(clean, tmp_path):
    """A worker pointed at an empty database does not start writing: it names the problem and exits."""
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    env = {**clean.env(DATABASE_URL=empty, SCHEMA_WAIT_TIMEOUT="3"), "SERVICE_ROLE": "worker"}
    proc = subprocess.Popen([sys.executable, "-m", "openvle"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=60 * WAIT_SCALE)
    assert proc.returncode == 1
    assert "cannot start: schema is at nothing, this version needs" in out
    assert "run `openvle migrate`" in out
    assert "Traceback" not in out
    assert os.path.exists(tmp_path / "empty.sqlite3")


def test_a_worker_restarted_under_a_name_still_registered_takes_a_suffix(clean):
    """A container started again after a kill has its old host name and often its old pid, while
    the killed worker is still registered: RQ refuses a name in use, so the new one steps aside."""
    import socket

    from rq import Queue

    from openvle.connections import get_redis
    from openvle.worker import worker_name

    redis = get_redis()
    plain = worker_name("worker-vm-clone", redis)
    assert plain == f"worker-vm-clone@{socket.gethostname()}.{os.getpid()}"
    Worker([Queue("pve_vm_clone", connection=redis)], connection=redis, name=plain).register_birth()  # killed
    again = worker_name("worker-vm-clone", redis)
    assert again.startswith(plain + "-") and len(again) == len(plain) + 5
    successor = Worker([Queue("pve_vm_clone", connection=redis)], connection=redis, name=again)
    successor.register_birth()  # RQ accepts it
    assert {w.name for w in Worker.all(connection=redis)} == {plain, again}
