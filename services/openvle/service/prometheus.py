"""/metrics for Prometheus, counted at scrape time from Redis and the database, so every backend
replica reports the same truth (nothing is counted in a process's memory)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from rq import Queue, Worker
from sqlalchemy import case, func, literal_column, select

from openvle.connections import get_redis
from openvle.db.engine import session_scope
from openvle.db.models import Event, EventStatus, Node, SubTask, Task, TaskStatus
from openvle.queues import QUEUE_NAMES
from openvle.service.monitoring import CLONE_SLOTS, role_of

log = logging.getLogger("openvle.metrics")

BUCKETS = (0.1, 0.5, 1, 2, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200)
REGISTRIES = ("queued", "started", "scheduled", "deferred", "failed", "finished", "canceled")


def _seconds(dialect: str):
    """An attempt's duration in seconds, as each database computes it."""
    if dialect in ("mysql", "mariadb"):
        return func.timestampdiff(literal_column("MICROSECOND"), SubTask.started_at, SubTask.finished_at) / 1e6
    return (func.julianday(SubTask.finished_at) - func.julianday(SubTask.started_at)) * 86400.0


class OpenVleCollector:
    def collect(self):
        yield from self._redis()
        yield from self._database()

    def _redis(self):
        up = GaugeMetricFamily("openvle_store_up", "1 when the store answered this scrape", labels=["store"])
        try:
            redis = get_redis()
            depth = GaugeMetricFamily("openvle_queue_jobs", "RQ jobs per queue and registry",
                                      labels=["queue", "registry"])
            oldest = GaugeMetricFamily("openvle_queue_oldest_waiting_seconds", "age of the job waiting longest",
                                       labels=["queue"])
            now = time.time()
            for name in QUEUE_NAMES:
                queue = Queue(name, connection=redis)
                counts = {"queued": queue.count, "started": queue.started_job_registry.count,
                          "scheduled": queue.scheduled_job_registry.count,
                          "deferred": queue.deferred_job_registry.count, "failed": queue.failed_job_registry.count,
                          "finished": queue.finished_job_registry.count, "canceled": queue.canceled_job_registry.count}
                for registry in REGISTRIES:
                    depth.add_metric([name, registry], counts[registry])
                first = queue.get_job_ids(0, 1)  # the head of the queue (offset, length: RQ 3)
                job = queue.fetch_job(first[0]) if first else None
                age = now - job.enqueued_at.timestamp() if job is not None and job.enqueued_at else 0.0
                oldest.add_metric([name], max(0.0, age))
            workers = GaugeMetricFamily("openvle_workers", "live RQ workers per role", labels=["role"])
            roles: dict[str, int] = {}
            for worker in Worker.all(connection=redis):
                roles[role_of(worker.name)] = roles.get(role_of(worker.name), 0) + 1
            for role, count in sorted(roles.items()):
                workers.add_metric([role], count)
            slots = GaugeMetricFamily("openvle_clone_slots_in_use", "clones in flight per Proxmox node",
                                      labels=["node"])
            prefix = CLONE_SLOTS.format("")
            nodes = {key.decode()[len(prefix):] for key in redis.scan_iter(match=prefix + "*", count=500)}
            with session_scope() as session:
                nodes |= set(session.execute(select(Node.name)).scalars())
            for node in sorted(nodes):
                slots.add_metric([node], redis.zcount(CLONE_SLOTS.format(node), now, "+inf"))
        except Exception as exc:
            log.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
            up.add_metric(["redis"], 0)
            yield up
            return
        up.add_metric(["redis"], 1)
        yield from (up, depth, oldest, workers, slots)

    def _database(self):
        up = GaugeMetricFamily("openvle_database_up", "1 when the database answered this scrape")
        try:
            with session_scope() as session:
                finished = session.execute(
                    select(Task.operation, Task.status, func.count()).where(Task.status.in_(TaskStatus.FINAL))
                    .group_by(Task.operation, Task.status)).all()
                active = session.execute(
                    select(Task.queue, Task.status, func.count()).where(Task.status.in_(TaskStatus.ACTIVE))
                    .group_by(Task.queue, Task.status)).all()
                seconds = _seconds(session.get_bind().dialect.name).label("seconds")
                durations = select(Task.queue.label("queue"), seconds).join(Task, Task.id == SubTask.task_id).where(
                    SubTask.finished_at.is_not(None)).subquery()
                histogram = session.execute(
                    select(durations.c.queue, func.count(), func.sum(durations.c.seconds),
                           *[func.sum(case((durations.c.seconds <= b, 1), else_=0)) for b in BUCKETS])
                    .group_by(durations.c.queue)).all()
                events = dict(session.execute(select(Event.status, func.count()).group_by(Event.status)).all())
        except Exception as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        done = GaugeMetricFamily("openvle_tasks_finished", "Tasks finished per operation and outcome (the database "
                                 "keeps them TASK_RETENTION_DAYS)", labels=["operation", "status"])
        for operation, status, count in finished:
            done.add_metric([operation, status], count)
        yield done
        waiting = GaugeMetricFamily("openvle_tasks_active", "Tasks queued or processing per queue",
                                    labels=["queue", "status"])
        for queue, status, count in active:
            waiting.add_metric([queue, status], count)
        yield waiting
        attempts = HistogramMetricFamily("openvle_attempt_duration_seconds", "how long finished attempts took",
                                         labels=["queue"])
        for queue, count, total, *cumulative in histogram:
            buckets = [(floatToGoString(b), int(c or 0)) for b, c in zip(BUCKETS, cumulative, strict=True)]
            attempts.add_metric([queue], buckets + [("+Inf", count)], float(total or 0))
        yield attempts
        per_state = GaugeMetricFamily("openvle_events", "events per state", labels=["state"])
        for state in EventStatus.ALL:
            per_state.add_metric([state], events.get(state, 0))
        yield per_state


def registry() -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=False)
    made.register(OpenVleCollector())
    return made
