"""Dependents RQ found ready are enqueued now, not at the next registry cleanup.

When a job succeeds, RQ 3 moves its dependents to the queue's ReadyJobRegistry and then enqueues
them, each under a WATCH of that registry. When another worker touches the same registry meanwhile
(four workers finishing Guacamole steps whose emails all wait in the `mails` registry), RQ concedes
the job "for now": it stays ready until a worker's registry cleanup, up to
WORKER_MAINTENANCE_INTERVAL s later. Measured in a 200-participant deploy: 18 steps waited 8-9 s
so, the last one adding that to the deploy's end. Trying again at once enqueues them.
"""

from __future__ import annotations

from rq import Queue
from rq.registry import ReadyJobRegistry

TRIES = 5  # RQ's own enqueue, again, while a contended dependent is still ready (then: the cleanup)


class PromptDependentsQueue(Queue):
    """RQ's Queue; dependents it conceded to a contended registry are enqueued again at once."""

    def enqueue_ready_jobs_by_queue(self, job_ids_by_queue_name: dict[str, list[str]]) -> None:
        pending = {name: list(ids) for name, ids in job_ids_by_queue_name.items() if ids}
        for _ in range(TRIES):
            super().enqueue_ready_jobs_by_queue(pending)
            pending = {name: left for name, ids in pending.items() if (left := self._still_ready(name, ids))}
            if not pending:
                return

    def _still_ready(self, queue_name: str, job_ids: list[str]) -> list[str]:
        key = ReadyJobRegistry(queue_name, connection=self.connection).key
        scores = self.connection.zmscore(key, job_ids)
        return [job_id for job_id, score in zip(job_ids, scores, strict=True) if score is not None]
