"""The worker roles: an RQ fork worker on the role's queues, with RQ's scheduler enabled.

The scheduler is what moves retries (and enqueue_in jobs) from the ScheduledJobRegistry back onto
their queue: without it a retry with an interval never runs. SIGTERM is RQ's warm shutdown: the
current job finishes, then the worker exits 0.
"""

from __future__ import annotations

import logging
import os
import socket

from rq import Queue, Worker

from openvle.connections import get_redis
from openvle.db.engine import get_engine
from openvle.db.schema import wait_until_current
from openvle.operations import load_jobs
from openvle.queues import ROLE_QUEUES
from openvle.settings import _Settings
from openvle.tracking import on_horse_killed

log = logging.getLogger("openvle.worker")


def worker_name(role: str) -> str:
    """`rq info` shows who is who: role, host (the container id under compose) and pid."""
    return f"{role}@{socket.gethostname()}.{os.getpid()}"


def build_worker(role: str, settings: _Settings) -> Worker:
    redis = get_redis()
    return Worker(
        [Queue(name, connection=redis) for name in ROLE_QUEUES[role]],
        connection=redis,
        name=worker_name(role),
        maintenance_interval=settings.WORKER_MAINTENANCE_INTERVAL,
        # An idle worker blocks in dequeue for worker_ttl - 15 s and runs maintenance only between
        # dequeues: tie the two, or jobs of dead workers wait up to 7 minutes (RQ's default) to be found.
        worker_ttl=settings.WORKER_MAINTENANCE_INTERVAL + 15,
        job_monitoring_interval=settings.WORKER_JOB_MONITORING_INTERVAL,
        work_horse_killed_handler=on_horse_killed,
    )


def run(role: str, settings: _Settings) -> int:
    load_jobs()  # import every job module before forking, so each work horse starts warm
    wait_until_current(get_engine(), timeout=settings.SCHEMA_WAIT_TIMEOUT)
    worker = build_worker(role, settings)
    log.info("worker %s listening on %s", worker.name, ", ".join(ROLE_QUEUES[role]))
    worker.work(with_scheduler=True, logging_level=settings.LOG_LEVEL)
    log.info("worker %s stopped", worker.name)
    return 0
