"""The queue table: retries and the waits users see, as RQ itself will apply them."""

from __future__ import annotations

import pytest
from rq.job import Job

from openvle.enqueue import enqueue_operation
from openvle.queues import QUEUE_NAMES, ROLE_QUEUES, policy, retry_intervals


def rq_waits(job: Job) -> list[int]:
    """Ask RQ's own Job for the wait before each retry, as its worker would."""
    waits = []
    while job.retries_left:
        waits.append(job.get_retry_interval())
        job.retries_left -= 1
    return waits


def test_last_interval_repeats_until_retries_are_used_up():
    assert retry_intervals((10, 30, 60), 5) == (10, 30, 60, 60, 60)
    assert retry_intervals((10, 30, 60), 2) == (10, 30)
    assert retry_intervals((10, 30, 60), 0) == ()


@pytest.mark.parametrize(
    ("queue", "max_retry", "waits"),
    [
        ("pve_vm_clone", "5", [10, 30, 60, 60, 60]),
        ("pve_vm_actions", "5", [5, 10, 15, 15, 15]),
        ("mails", "5", [30, 60, 120, 120, 120]),
        ("guacamole", "2", [10, 30]),
        ("moodle", "7", [10, 30, 60, 60, 60, 60, 60]),
        ("pve_periodic", "9", [5, 10, 15]),  # fixed at 3 whatever WORKER_MAX_RETRY says
        ("core_periodic", "1", [5, 10, 15]),
    ],
)
def test_enqueued_job_waits_what_the_table_says(settings_env, queue, max_retry, waits):
    settings_env(WORKER_MAX_RETRY=max_retry)
    task = enqueue_operation(f"demo.{queue}")

    job = Job.fetch(task.rq_job_id, connection=_redis())
    assert job.origin == queue
    assert task.max_attempts == 1 + len(waits)
    assert rq_waits(job) == waits


def _redis():
    from openvle.connections import get_redis

    return get_redis()


def test_no_retry_at_all_when_worker_max_retry_is_zero(settings_env):
    settings_env(WORKER_MAX_RETRY="0")
    task = enqueue_operation("demo.mails")
    job = Job.fetch(task.rq_job_id, connection=_redis())
    assert not job.retries_left and task.max_attempts == 1


def test_timeouts_and_ttls_are_set_and_overridable(settings_env):
    settings_env(QUEUE_PVE_VM_CLONE_TIMEOUT="5400", QUEUE_MAILS_RESULT_TTL="120", QUEUE_MAILS_FAILURE_TTL="3600")
    clone = Job.fetch(enqueue_operation("demo.pve_vm_clone").rq_job_id, connection=_redis())
    mail = Job.fetch(enqueue_operation("demo.mails").rq_job_id, connection=_redis())
    actions = Job.fetch(enqueue_operation("demo.pve_vm_actions").rq_job_id, connection=_redis())

    assert clone.timeout == 5400
    assert mail.result_ttl == 120 and mail.failure_ttl == 3600
    defaults = policy("pve_vm_actions", _settings())
    assert actions.timeout == defaults.timeout and actions.result_ttl == defaults.result_ttl
    assert actions.failure_ttl == defaults.failure_ttl < 365 * 86400  # RQ's default is a year


def _settings():
    from openvle.settings import get_settings

    return get_settings()


def test_clones_get_the_longest_timeout():
    from openvle.queues import QUEUES

    assert QUEUES["pve_vm_clone"].timeout == max(spec.timeout for spec in QUEUES.values())


def test_every_queue_has_exactly_one_kind_of_worker_and_worker_all_has_all():
    split = [q for role, queues in ROLE_QUEUES.items() if role != "worker-all" for q in queues]
    assert sorted(split) == sorted(QUEUE_NAMES)
    assert ROLE_QUEUES["worker-all"] == QUEUE_NAMES
    assert ROLE_QUEUES["worker"] == ("pve_vm_actions", "core_periodic", "guacamole", "mails", "moodle")
