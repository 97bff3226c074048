"""The scheduler role: `rq cron` with the periodic registrations, always on UTC."""

from __future__ import annotations

import logging
import os
import socket
import time

from rq.cron import CronScheduler

from openvle.connections import get_redis
from openvle.periodic import register_all
from openvle.settings import _Settings

log = logging.getLogger("openvle.scheduler")


def run(settings: _Settings) -> int:
    # rq 3 reads cron strings in local time (2.12 in UTC): pin the process to UTC either way.
    os.environ["TZ"] = "UTC"
    time.tzset()
    cron = CronScheduler(connection=get_redis(), name=f"scheduler@{socket.gethostname()}.{os.getpid()}")
    register_all(cron, settings)
    log.info("scheduler %s started with %d periodic job(s)", cron.name, len(cron.get_jobs()))
    cron.start()
    return 0
