"""The worker roles: an RQ fork worker on the role's queues, with RQ's scheduler enabled.

The scheduler is what moves retries (and enqueue_in jobs) from the ScheduledJobRegistry back onto
their queue: without it a retry with an interval never runs. SIGTERM is RQ's warm shutdown: the
current job finishes, then the worker exits 0.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from redis import Redis
from rq import Worker
from rq.exceptions import StopRequested
from rq.scheduler import RQScheduler
from rq.worker import WorkerStatus
from sqlalchemy.orm import configure_mappers

from openvle import dead_workers, records, stores, tracking
from openvle.bookkeeper import Bookkeeper
from openvle.connections import get_redis
from openvle.db.engine import get_engine
from openvle.db.schema import wait_until_current
from openvle.operations import load_jobs
from openvle.queues import QUEUE_NAMES, ROLE_QUEUES
from openvle.ready_dependents import PromptDependentsQueue
from openvle.settings import Settings, get_settings

log = logging.getLogger("openvle.worker")


def worker_name(role: str, connection: Redis | None = None) -> str:
    """`rq info` shows who is who: role, host (the container id under compose) and pid.

    A container started again after a kill keeps its host name and often gets its old pid back,
    while the killed worker stays registered until its key expires: RQ refuses a name in use
    ("There exists an active worker named ...") and the container would crash until then. A short
    suffix keeps the new worker apart from its predecessor (never take over the name: the other
    holder may be alive, e.g. two containers sharing the host's network and name)."""
    name = f"{role}@{socket.gethostname()}.{os.getpid()}"
    if connection is not None and connection.exists(Worker.redis_worker_namespace_prefix + name):
        taken = name
        name = f"{name}-{secrets.token_hex(2)}"
        log.warning("worker name %s is still registered (a killed predecessor?): this worker is %s", taken, name)
    return name


class TrackingWorker(Worker):
    """RQ's fork worker, opening each Task attempt before the fork and closing successes after it,
    both written by its bookkeeper process (bookkeeper.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bookkeeper = Bookkeeper()

    def request_stop(self, signum, frame):
        """Warm shutdown; a wait for Redis ends too, or a worker that lost Redis would never stop."""
        stores.stop_waiting(StopRequested)
        super().request_stop(signum, frame)

    def request_force_stop(self, signum, frame):
        stores.stop_waiting(StopRequested)
        super().request_force_stop(signum, frame)

    def unsubscribe(self):
        """RQ's pub/sub thread (stop and kill commands) sleeps up to 60 s in a read and relies on the
        unsubscribe reply to wake it; when the thread read that reply before its stop flag was
        cleared, it waited 60 s for a new subscription, and redis-py 8's stop() joins it without a
        bound: a worker asked to stop hung for a minute (compose then kills it). So the flag is
        cleared first (stop without waiting), and the join is bounded (the thread is a daemon)."""
        if self.pubsub_thread:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub_thread.stop(timeout=0)
            self.pubsub.unsubscribe()  # its reply wakes the thread, which now ends
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()

    def serialize(self) -> dict:
        """RQ's registration, plus where our pid means something: a worker on the same machine and
        pid namespace tells a dead one by its pid at once (dead_workers)."""
        return {**super().serialize(), "pid_space": dead_workers.pid_space()}

    def register_birth(self):
        super().register_birth()
        try:
            dead_workers.note_life(self.connection, self.name, _lives_dir())
        except OSError as exc:  # a read-only file system: dead workers are still told by their heartbeat
            log.warning("cannot leave a life note in WORKER_LIVES_DIR (%s): %s", _lives_dir(), exc)

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", date_format: str = "",
                         log_format: str = "") -> None:
        """RQ's, with two changes: a dead worker's scheduler keeps its queues' locks for 61 s, so free
        them first (this worker then schedules their retries and check-backs from its first moment);
        and the scheduler waits for Redis when it is away instead of dying with it."""
        stores.call_with_redis(self._look_for_dead_workers)
        self.scheduler = PatientScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                          logging_level=logging_level or self.log.level)
        stores.call_with_redis(self.scheduler.acquire_locks)
        if self.scheduler.acquired_locks:
            self.scheduler.start()

    def run_maintenance_tasks(self):
        def maintain():
            self._look_for_dead_workers()  # before RQ's part, which starts our scheduler if it can lock
            super(TrackingWorker, self).run_maintenance_tasks()

        stores.call_with_redis(maintain)

    def _look_for_dead_workers(self) -> None:
        try:
            dead_workers.reap(self.connection, QUEUE_NAMES, self.job_monitoring_interval)
            mine = self.scheduler.name if self.scheduler else None
            dead_workers.free_dead_scheduler_locks(self.connection, self.queue_names(), mine)
        except stores.REDIS_DOWN:
            raise  # waited for by the caller
        except Exception as exc:  # never the reason a worker stops; the next look tries again
            log.warning("could not look for dead workers: %s: %s", type(exc).__name__, exc)

    # Every Redis call of RQ's work loop waits for Redis when it is away: RQ would quit ("found an
    # unhandled exception, quitting"), and a busy worker would leave its job for the heartbeat expiry.

    def bootstrap(self, *args, **kwargs):
        stores.wait_for_redis(self.connection)  # not retried whole: a second registration would be refused
        super().bootstrap(*args, **kwargs)

    def check_for_suspension(self, burst: bool) -> None:
        stores.call_with_redis(super().check_for_suspension, burst)

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        return stores.call_with_redis(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is not None:  # part of a pipeline: its execute() is where Redis is met
            return super().heartbeat(timeout, pipeline)
        return stores.call_with_redis(super().heartbeat, timeout)

    def maintain_heartbeats(self, job, execution):
        stores.call_with_redis(super().maintain_heartbeats, job, execution)

    def _finalize_success(self, job, queue, execution, return_value):
        """In the horse: a job that ended while Redis was away waits to say how it ended (RQ would
        give up, and the attempt would count as lost although it did its work). Once RQ has it
        finished, the success goes to the bookkeeper."""
        stores.call_with_redis(super()._finalize_success, job, queue, execution, return_value)
        tracking.hand_over_success(job, return_value, self.bookkeeper.record)

    def _finalize_failure(self, *args, **kwargs):
        stores.call_with_redis(super()._finalize_failure, *args, **kwargs)

    def teardown(self):
        try:
            super().teardown()
        except stores.REDIS_DOWN as exc:  # stopping anyway: the registration expires by itself
            log.warning("could not unregister from Redis while stopping: %s", type(exc).__name__)
        if not self.is_horse:
            dead_workers.forget_life(self.name, _lives_dir())
            self.bookkeeper.stop()
            _logout_guacamole(self.queue_names())

    def handle_exception(self, job, *exc_info):
        """RQ logs every failed attempt with its traceback at ERROR; `execute` already logged a
        Task's failure in one line (traceback included when it failed for good), so for Tasks only
        the exception handlers run."""
        if tracking.task_id_of(job) is None:
            return super().handle_exception(job, *exc_info)
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def execute_job(self, job, queue):
        tracking.ask_to_open(job, self.name, self.bookkeeper.ask_open)
        try:
            super().execute_job(job, queue)
        except stores.REDIS_DOWN:
            # Redis went away while the job ran: how it ended is unknown to RQ. Once Redis is back,
            # RQ's abandoned-job handling records the attempt as lost and retries it, now rather
            # than when its heartbeat entry lapses.
            stores.wait_for_redis(self.connection)
            stores.call_with_redis(dead_workers.abandon, self.connection, job.id, queue.name,
                                   "its worker lost Redis while it ran")
            self.set_state(WorkerStatus.IDLE)
        finally:
            tracking.forget_attempt(job)

    def perform_job(self, job, queue, execution):
        """In the horse: the attempt's opening first, outside the job's timeout (the bookkeeper waits
        while the database is away, and so does the job, without using up its time)."""
        tracking.await_opening(job, self.bookkeeper.answer)
        return super().perform_job(job, queue, execution)


class PatientScheduler(RQScheduler):
    """RQ's scheduler (a process of its own, moving due retries and check-backs to their queues),
    waiting for Redis when it is away instead of dying with a traceback."""

    def request_stop(self, signum=None, frame=None):
        stores.stop_waiting()  # its worker stops it: a wait for Redis must not outlast that
        super().request_stop(signum, frame)

    def register_birth(self):
        stores.call_with_redis(super().register_birth)

    def acquire_locks(self, auto_start=False):
        return stores.call_with_redis(super().acquire_locks, auto_start)

    def heartbeat(self):
        stores.call_with_redis(super().heartbeat)

    def enqueue_scheduled_jobs(self):
        stores.call_with_redis(super().enqueue_scheduled_jobs)

    def stop(self):
        try:
            super().stop()
        except stores.REDIS_DOWN:  # stopping anyway: its lock and registration expire by themselves
            pass


def _lives_dir() -> Path:
    return Path(get_settings().WORKER_LIVES_DIR)


def _logout_guacamole(queues: list[str]) -> None:
    """Give the shared Guacamole session back; the next job (any worker) logs in again."""
    if "guacamole" not in queues or not get_settings().GUACAMOLE_URL:
        return
    try:
        from openvle.clients.guacamole import get_guacamole

        get_guacamole().logout()
    except Exception as exc:  # shutting down anyway
        log.warning("could not log out of Guacamole: %s", type(exc).__name__)


def build_worker(role: str, settings: Settings) -> Worker:
    redis = get_redis()
    return TrackingWorker(
        [PromptDependentsQueue(name, connection=redis) for name in ROLE_QUEUES[role]],
        connection=redis,
        queue_class=PromptDependentsQueue,
        name=worker_name(role, redis),
        maintenance_interval=settings.WORKER_MAINTENANCE_INTERVAL,
        # An idle worker blocks in dequeue for worker_ttl - 15 s and runs maintenance only between
        # dequeues: tie the two, or jobs of dead workers wait up to 7 minutes (RQ's default) to be found.
        worker_ttl=settings.WORKER_MAINTENANCE_INTERVAL + 15,
        job_monitoring_interval=settings.WORKER_JOB_MONITORING_INTERVAL,
        work_horse_killed_handler=tracking.on_horse_killed,
    )


def _die_with_worker() -> None:
    """In each process the worker forks (RQ's scheduler, every work horse): stop when the worker is
    gone. A scheduler outliving a killed worker would keep its queues' scheduler locks and run on
    unseen; a horse outliving it would run its job on while the retry of that same job starts."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run(role: str, settings: Settings) -> int:
    if sys.platform == "linux":
        os.register_at_fork(after_in_child=_die_with_worker)
    os.register_at_fork(after_in_child=stores.keep_quiet)  # the worker says when a store is away, once
    load_jobs()  # import every job module before forking, so each work horse starts warm
    # SQLAlchemy configures the ORM's mappers at the first ORM query of a process: done here once,
    # not again in every horse (it was ~15 % of the clone worker's time in a 200-clone deploy).
    configure_mappers()
    stores.wait_for_database()  # however long it is away: said once, and once that it is back
    wait_until_current(get_engine(), timeout=settings.SCHEMA_WAIT_TIMEOUT)
    stores.call_with_database(records.warm_up)  # compile the bookkeeping statements once, before any fork
    gc.freeze()  # keep the collector from touching (and so copying) the worker's memory in each horse
    worker = stores.call_with_redis(build_worker, role, settings)
    log.info("worker %s listening on %s", worker.name, ", ".join(ROLE_QUEUES[role]))
    watcher = _start_clone_watcher(role, settings)
    try:
        worker.work(with_scheduler=True, logging_level=settings.LOG_LEVEL)
    finally:
        if watcher is not None:
            watcher.terminate()
            watcher.join(5)
    log.info("worker %s stopped", worker.name)
    return 0


def _start_clone_watcher(role: str, settings: Settings):
    """A worker of the clone queue brings a clone watcher (clone_watch): its own process, which dies
    with the worker (_die_with_worker) and whose lead another replica's watcher then takes over."""
    if "pve_vm_clone" not in ROLE_QUEUES[role] or not settings.PVE_HOST or not settings.PVE_CLONE_WATCHER:
        return None
    import multiprocessing

    from openvle import clone_watch

    process = multiprocessing.get_context("fork").Process(target=clone_watch.run, name="clone-watcher",
                                                           daemon=True)
    process.start()
    return process
