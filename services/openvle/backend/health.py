"""Liveness of what the backend needs, and what operators watch: queues, workers, the scheduler."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from rq import Queue, Worker
from rq.cron import CronScheduler
from sqlalchemy import text

from openvle.connections import get_redis
from openvle.db.engine import get_engine
from openvle.db.models import iso_utc
from openvle.jobs.housekeeping import HEARTBEAT_KEY
from openvle.queues import QUEUE_TABLE, policy
from openvle.settings import get_settings

router = APIRouter()


@router.get("/healthz", summary="200 when Redis and the database answer, else 503 naming what is down")
def healthz() -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return JSONResponse({"status": "down", "down": down, "checks": checks}, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks})


@router.get("/api/queues", summary="The queue table with live counts")
def queues() -> list[dict]:
    redis = get_redis()
    settings = get_settings()
    workers = Worker.all(connection=redis)
    out = []
    for spec in QUEUE_TABLE:
        queue = Queue(spec.name, connection=redis)
        pol = policy(spec.name, settings)
        out.append({
            "name": spec.name,
            "purpose": spec.purpose,
            "max_retries": pol.max_retries,
            "retry_intervals": list(pol.intervals),
            "timeout": pol.timeout,
            "result_ttl": pol.result_ttl,
            "failure_ttl": pol.failure_ttl,
            "queued": queue.count,
            "started": queue.started_job_registry.count,
            "scheduled": queue.scheduled_job_registry.count,
            "deferred": queue.deferred_job_registry.count,
            "failed": queue.failed_job_registry.count,
            "workers": sorted(w.name for w in workers if spec.name in w.queue_names()),
        })
    return out


@router.get("/api/workers", summary="Live RQ workers and schedulers")
def workers() -> dict:
    redis = get_redis()
    heartbeat = redis.get(HEARTBEAT_KEY)
    return {
        "workers": [
            {
                "name": w.name,
                "queues": w.queue_names(),
                "state": str(w.get_state()),
                "current_job": w.get_current_job_id(),
                "last_heartbeat": iso_utc(w.last_heartbeat) if w.last_heartbeat else None,
            }
            for w in sorted(Worker.all(connection=redis), key=lambda w: w.name)
        ],
        "schedulers": [s.name for s in CronScheduler.all(connection=redis)],
        "last_periodic_heartbeat": heartbeat.decode() if heartbeat else None,
    }
