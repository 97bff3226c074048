"""What operators watch (admins): queues and their RQ registries, workers by role, the scheduler and
its periodic jobs, Proxmox nodes with their last sync and metric history. Read from Redis and the
database on every call, so every backend replica tells the same truth."""

from __future__ import annotations

import datetime as dt
import time

from rq import Queue, Worker
from rq.cron import CronScheduler
from sqlalchemy import select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.clients.metrics import get_metrics_store
from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Node
from openvle.errors import Invalid, NotFound
from openvle.jobs.housekeeping import HEARTBEAT_KEY
from openvle.queues import QUEUE_TABLE, policy
from openvle.service.views import (
    NodeMetricView,
    NodeView,
    PeriodicView,
    QueueView,
    SchedulersView,
    SchedulerView,
    WorkerView,
)
from openvle.settings import get_settings

CLONE_SLOTS = "openvle:clone-slots:node:{}"  # pacing.py's per-node sorted sets


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value is not None and value.tzinfo else value


def queue_counts() -> list[QueueView]:
    redis = get_redis()
    settings = get_settings()
    workers = Worker.all(connection=redis)
    now = time.time()
    out = []
    for spec in QUEUE_TABLE:
        queue = Queue(spec.name, connection=redis)
        pol = policy(spec.name, settings)
        oldest = None
        first = queue.get_job_ids(0, 1)  # the head of the queue (offset, length: RQ 3)
        if first:
            job = queue.fetch_job(first[0])
            if job is not None and job.enqueued_at is not None:
                oldest = round(max(0.0, now - job.enqueued_at.replace(tzinfo=dt.UTC).timestamp()), 3)
        out.append(QueueView(
            name=spec.name, purpose=spec.purpose, max_retries=pol.max_retries, retry_intervals=list(pol.intervals),
            timeout=pol.timeout, result_ttl=pol.result_ttl, failure_ttl=pol.failure_ttl, queued=queue.count,
            started=queue.started_job_registry.count, scheduled=queue.scheduled_job_registry.count,
            deferred=queue.deferred_job_registry.count, failed=queue.failed_job_registry.count,
            finished=queue.finished_job_registry.count, canceled=queue.canceled_job_registry.count,
            oldest_waiting_seconds=oldest,
            workers=sorted(w.name for w in workers if spec.name in w.queue_names())))
    return out


def queues(actor: Actor) -> list[QueueView]:
    authz.require_admin(actor, "watch the queues")
    return queue_counts()


def role_of(worker_name: str) -> str:
    """Worker names are <role>@<host>.<pid> (worker.py)."""
    return worker_name.split("@", 1)[0] if "@" in worker_name else "unknown"


def worker_list() -> list[WorkerView]:
    redis = get_redis()
    out = []
    for w in sorted(Worker.all(connection=redis), key=lambda w: w.name):
        job_id = w.get_current_job_id()
        task_id = None
        if job_id:
            job = w.get_current_job()
            task_id = (job.meta or {}).get("task_id") if job is not None else None
        out.append(WorkerView(name=w.name, role=role_of(w.name), queues=w.queue_names(), state=str(w.get_state()),
                              current_job=job_id, current_task=task_id, last_heartbeat=_naive(w.last_heartbeat)))
    return out


def workers(actor: Actor) -> list[WorkerView]:
    authz.require_admin(actor, "watch the workers")
    return worker_list()


def schedulers(actor: Actor) -> SchedulersView:
    authz.require_admin(actor, "watch the scheduler")
    redis = get_redis()
    out = []
    for cron in sorted(CronScheduler.all(connection=redis), key=lambda c: c.name):
        jobs = [PeriodicView(name=job.name or job.func_name,
                             schedule=job.cron or f"every {job.interval} s",
                             last_run=_naive(job.latest_enqueue_time), next_run=_naive(job.next_enqueue_time))
                for job in cron.get_jobs()]
        out.append(SchedulerView(name=cron.name, last_heartbeat=_naive(cron.last_heartbeat),
                                 jobs=sorted(jobs, key=lambda j: j.name)))
    heartbeat = redis.get(HEARTBEAT_KEY)
    return SchedulersView(schedulers=out, last_periodic_heartbeat=heartbeat.decode() if heartbeat else None)


def clone_slots(node: str) -> int:
    return get_redis().zcount(CLONE_SLOTS.format(node), time.time(), "+inf")


def nodes(actor: Actor) -> list[NodeView]:
    authz.require_admin(actor, "watch the Proxmox nodes")
    with session_scope() as session:
        rows = list(session.execute(select(Node).order_by(Node.name)).scalars())
        return [NodeView.model_validate({**{k: getattr(n, k) for k in NodeView.model_fields
                                            if k != "clone_slots_in_use"}, "clone_slots_in_use": clone_slots(n.name)})
                for n in rows]


def node_history(actor: Actor, node: str, hours: int = 24) -> list[NodeMetricView]:
    authz.require_admin(actor, "watch the Proxmox nodes")
    if not 1 <= hours <= 24 * 366:
        raise Invalid(f"hours must be 1 to {24 * 366}, not {hours}")
    with session_scope() as session:
        if session.execute(select(Node.id).where(Node.name == node)).first() is None:
            raise NotFound(f"node {node!r} does not exist (no sync has seen it)")
    store = get_metrics_store()
    if store is None:
        raise NotFound("node metric history is not kept: set MONGO_URL to keep it")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    return [NodeMetricView.model_validate({**d, "time": _naive(d["time"])}) for d in store.history(node, since)]


def history_kept() -> bool:
    """Whether node metric history is kept at all (MONGO_URL is set)."""
    return get_metrics_store() is not None


def node_histories(actor: Actor, hours: int = 24) -> dict[str, list[NodeMetricView]] | None:
    """Every known node's metric history (one chart each); None when no history is kept."""
    if not history_kept():
        authz.require_admin(actor, "watch the Proxmox nodes")
        return None
    return {node.name: node_history(actor, node.name, hours) for node in nodes(actor)}
