"""Run a job that waits in RQ's schedule now: out of the ScheduledJobRegistry, onto its queue.

Jobs check back by being scheduled (a CheckBack is a retry with an interval); when what one waits
for happens before its look is due (a clone slot frees, the last step of a deploy ends), whoever
sees it moves the job instead of letting it wait for its look.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.exceptions import WatchError
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry


def run_now(redis, job: Job, at_front: bool = True, also: Callable | None = None) -> bool:
    """Out of the schedule, onto the front of its queue (it starts before the work queued behind it,
    as the scheduler would with the same retry; `at_front` False: behind it), and `also(pipe)` in
    the same Redis transaction: a crash or a lost connection leaves it where it was, never in
    neither place. False when it is not (or no longer) in the schedule."""
    schedule = ScheduledJobRegistry(job.origin, connection=redis).key
    with redis.pipeline() as pipe:
        try:
            pipe.watch(schedule)
            if pipe.zscore(schedule, job.id) is None:
                return False
            pipe.multi()
            pipe.zrem(schedule, job.id)
            # RQ's scheduler moves due jobs the same way (its enqueue without the dependency check).
            Queue(job.origin, connection=redis)._enqueue_job(job, pipeline=pipe, at_front=at_front)
            if also is not None:
                also(pipe)
            pipe.execute()
        except WatchError:  # the scheduler (or another waker) moved it meanwhile
            return False
    return True


# Ahead of its queue: only when it is still in it (a worker may have taken it meanwhile).
_TO_FRONT = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def to_front(redis, job: Job) -> bool:
    """A job already queued goes to the front of its queue (what it waited for happened); False
    when it is no longer in the queue."""
    return bool(redis.eval(_TO_FRONT, 1, Queue(job.origin, connection=redis).key, job.id))


def run_job_now(redis, job_id: str | None, also: Callable | None = None) -> bool:
    """The same, by job id; False when there is no such job or it is not scheduled."""
    from rq.exceptions import NoSuchJobError

    if not job_id:
        return False
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    return run_now(redis, job, also=also)
