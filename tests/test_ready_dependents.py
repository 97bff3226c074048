"""A step whose parent succeeded starts now, even when other workers touch its queue's registry
of ready dependents at that moment (RQ alone leaves it for the next registry cleanup, up to
WORKER_MAINTENANCE_INTERVAL s later: seen as 8-9 s gaps in a 200-participant deploy).

The contention is real: a second client changes the ready registry between RQ's WATCH and its
EXEC, exactly once, so Redis itself aborts RQ's transaction."""

from __future__ import annotations

import pytest
from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import JobStatus
from rq.registry import ReadyJobRegistry

from openvle.connections import get_redis
from openvle.ready_dependents import PromptDependentsQueue


class _Contended(Redis):
    """A connection whose next watched transaction meets another client's write to `key`."""

    def __init__(self, other: Redis, key: str):
        super().__init__(connection_pool=other.connection_pool)
        self.other, self.key, self.contend = other, key, 1

    def pipeline(self, transaction=True, shard_hint=None):
        owner = self

        class Racing(Pipeline):
            def execute(self, raise_on_error=True):
                if self.watching and owner.contend and self.explicit_transaction:
                    owner.contend -= 1
                    owner.other.zadd(owner.key, {"another-worker-s-dependent": 1})  # the other worker
                return super().execute(raise_on_error)

        return Racing(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def _ready_dependent(redis: Redis):
    """An email step whose parent just succeeded: ready, waiting to be put on its queue."""
    job = Queue("mails", connection=redis).create_job("builtins.print", args=("sent",))
    job.save()
    registry = ReadyJobRegistry("mails", connection=redis)
    with redis.pipeline() as pipe:
        registry.register_jobs([job], pipeline=pipe)
        pipe.execute()
    return job, registry


@pytest.mark.parametrize("queue_class, enqueued", [(Queue, False), (PromptDependentsQueue, True)])
def test_a_ready_dependent_is_enqueued_at_once_despite_a_contended_registry(clean, queue_class, enqueued):
    redis = get_redis()
    job, registry = _ready_dependent(redis)
    contended = _Contended(redis, registry.key)

    queue_class("guacamole", connection=contended).enqueue_ready_jobs_by_queue({"mails": [job.id]})

    assert contended.contend == 0  # the race happened
    assert (job.id in Queue("mails", connection=redis).job_ids) is enqueued
    assert (redis.zscore(registry.key, job.id) is None) is enqueued  # RQ alone: still waiting for a cleanup
    if enqueued:
        assert job.get_status(refresh=True) == JobStatus.QUEUED
