"""The scheduler role: `rq cron` with the periodic registrations, always on UTC."""

from __future__ import annotations

import logging
import os
import socket
import time

from rq.cron import CronScheduler

from openvle import stores
from openvle.connections import get_redis
from openvle.periodic import register_all
from openvle.settings import Settings

log = logging.getLogger("openvle.scheduler")


class PatientCron(CronScheduler):
    """RQ's cron, waiting for Redis when it is away instead of exiting: every periodic job, the
    reconciler's included, would stop until something started the role again."""

    def _request_stop(self, signum, frame):
        stores.stop_waiting()  # a wait for Redis ends as well: the role stops even while Redis is away
        super()._request_stop(signum, frame)

    def register_birth(self):
        stores.call_with_redis(super().register_birth)

    def enqueue_jobs(self):
        # A run enqueued twice (Redis went away between two of them) is harmless: each tick claims
        # its time slot once (periodic.py).
        return stores.call_with_redis(super().enqueue_jobs)

    def save(self, *args, **kwargs):
        stores.call_with_redis(super().save, *args, **kwargs)

    def heartbeat(self, *args, **kwargs):
        stores.call_with_redis(super().heartbeat, *args, **kwargs)

    def register_death(self, *args, **kwargs):
        try:
            super().register_death(*args, **kwargs)
        except stores.REDIS_DOWN:  # stopping anyway: the registration expires by itself
            log.warning("could not unregister from Redis while stopping")


def run(settings: Settings) -> int:
    # rq 3 reads cron strings in local time (2.12 in UTC): pin the process to UTC either way.
    os.environ["TZ"] = "UTC"
    time.tzset()
    cron = PatientCron(connection=get_redis(), name=f"scheduler@{socket.gethostname()}.{os.getpid()}")
    register_all(cron, settings)
    log.info("scheduler %s started with %d periodic job(s)", cron.name, len(cron.get_jobs()))
    cron.start()
    return 0
