"""`openvle healthcheck`: the Docker HEALTHCHECK of each role, run inside its container.

backend: /healthz answers 200. Workers: an RQ worker of this role on this host has sent a heartbeat
recently. Scheduler: a cron scheduler on this host has. Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import datetime as dt
import socket
import sys

from openvle.settings import Settings


def _recent(when: dt.datetime | None, seconds: int) -> bool:
    if when is None:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - when).total_seconds() < seconds


def check(settings: Settings) -> int:
    role = settings.SERVICE_ROLE
    host = socket.gethostname()
    try:
        if role == "backend":
            import httpx

            response = httpx.get(f"http://127.0.0.1:{settings.BACKEND_PORT}/healthz", timeout=5)
            healthy, detail = response.status_code == 200, response.text
        elif role == "sandbox":
            import httpx

            response = httpx.get(f"https://127.0.0.1:{settings.SANDBOX_PVE_PORT}/_sandbox/state", verify=False,
                                 timeout=5)
            healthy, detail = response.status_code == 200, f"Proxmox simulator answered {response.status_code}"
        elif role == "scheduler":
            from rq.cron import CronScheduler

            from openvle.connections import get_redis

            mine = [s for s in CronScheduler.all(connection=get_redis()) if s.name.startswith(f"scheduler@{host}.")]
            healthy = any(_recent(s.last_heartbeat, 120) for s in mine)
            detail = f"{len(mine)} scheduler(s) on {host}"
        elif role and role.startswith("worker"):
            from rq import Worker

            from openvle.connections import get_redis

            mine = [w for w in Worker.all(connection=get_redis()) if w.name.startswith(f"{role}@{host}.")]
            # Idle workers beat every WORKER_MAINTENANCE_INTERVAL s, busy ones every monitoring interval.
            limit = max(settings.WORKER_MAINTENANCE_INTERVAL, settings.WORKER_JOB_MONITORING_INTERVAL) + 60
            healthy = any(_recent(w.last_heartbeat, limit) for w in mine)
            detail = f"{len(mine)} {role} worker(s) on {host}"
        else:
            healthy, detail = False, f"no health check for SERVICE_ROLE={role!r}"
    except Exception as exc:
        healthy, detail = False, f"{type(exc).__name__}: {exc}"
    print(("healthy: " if healthy else "unhealthy: ") + detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
