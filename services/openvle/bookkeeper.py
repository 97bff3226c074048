"""A worker's bookkeeper: the process beside each worker that writes its attempts to the database.

RQ forks a work horse per job, and after each fork the first write to any page of the worker's
memory is a copy-on-write fault. Writing one attempt through SQLAlchemy touches ~500 pages: on the
project's 2-core VM ~4 ms a write, twice a job (the attempt's opening and its success), more than
the statements themselves. The bookkeeper never forks, so its pages stay its own, and it writes a
success while the worker already takes the next job: the worker only waits for an opening, whose
answer (opened, or the Task is over) decides whether the job runs.

What stays safe: the horse's `execute` still finds its attempt opened before the fork; a success
the bookkeeper could not write (it died with its worker, or the database stayed away past the
worker's stop) is written by the reconciler from RQ's record, as for a worker killed after a job.
A bookkeeper that dies is started again at the next job (said in one line).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from openvle import stores, tracking
from openvle.db.engine import get_engine

log = logging.getLogger("openvle.bookkeeper")

STOP_WAIT = 10  # seconds a stopping worker waits for the successes still to write
PARENT_LOOK = 1.0  # seconds between looks whether the worker is still there, while nothing comes


class HeldConnection:
    """The one DB connection the bookkeeping keeps: no pool checkout, ping or reset per job."""

    IDLE_CHECK = 60  # seconds idle after which the server may have dropped us (wait_timeout)

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._used = 0.0

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        if self._conn is not None and time.monotonic() - self._used > self.IDLE_CHECK:
            self._drop_if_dead()
        if self._conn is None:
            self._conn = get_engine().connect()
        try:
            with self._conn.begin():
                yield self._conn
        except DBAPIError:
            self.close()  # reconnect next time rather than reuse a connection in an unknown state
            raise
        finally:
            self._used = time.monotonic()

    def _drop_if_dead(self) -> None:
        try:
            self._conn.exec_driver_sql("SELECT 1")
            self._conn.rollback()
        except DBAPIError:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None


class Bookkeeper:
    """The pipe to a worker's bookkeeper, used from both sides of RQ's fork.

    The worker asks for an opening (`ask_open`) and forks at once; the horse waits for the answer
    (`answer`) before it runs the job, so the write overlaps the fork. The horse hands over its
    success (`record`) once RQ has the job finished, and exits. Only one horse runs at a time, and
    the worker never reads: every answer is read by the horse of its job (a horse killed before it
    read leaves a stale answer, which the next ask drops)."""

    def __init__(self) -> None:
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Pipe | None = None

    def ask_open(self, job_id: str, queue: str, task_id: int, attempt: int, worker_name: str) -> bool:
        """In the worker: ask for the opening of `attempt`; False if nobody could be asked (the horse
        then opens it itself)."""
        pipe = self._ready()
        if pipe is None:
            return False
        try:
            while pipe.poll(0):  # answers no horse read (it was killed first)
                _receive(pipe)
            _send(pipe, ("open", job_id, queue, task_id, attempt, worker_name))
            return True
        except (OSError, EOFError) as exc:
            self._lost(exc)
            return False

    def answer(self, job_id: str) -> int | None:
        """In the horse: the attempt opened for `job_id` (tracking.SKIP when the Task is over), or None
        if no answer can come (the horse then opens it itself). Waits while the database is away."""
        try:
            while True:
                if not self._pipe.poll(PARENT_LOOK):
                    continue
                _, about, opened = _receive(self._pipe)
                if about == job_id:
                    return opened
        except (OSError, EOFError, AttributeError):  # AttributeError: no pipe (never started)
            return None

    def record(self, task_id: int, attempt: int, result: Any) -> bool:
        """In the horse: hand over a success to write; False if nobody takes it (then write it yourself)."""
        if self._pipe is None:
            return False
        try:
            _send(self._pipe, ("success", task_id, attempt, result))
            return True
        except (OSError, EOFError):
            return False

    def stop(self) -> None:
        """In the worker, stopping: wait (up to STOP_WAIT) for what is left to write, then end it."""
        if self._process is None:
            return
        pipe, process = self._pipe, self._process
        self._pipe = self._process = None
        try:
            _send(pipe, ("stop",))
            deadline = time.monotonic() + STOP_WAIT
            while pipe.poll(max(0.0, deadline - time.monotonic())):
                if _receive(pipe) == ("stopped", None, None):
                    break
            else:
                log.warning("the bookkeeper did not finish writing within %ss: the reconciler records the "
                            "successes it left from RQ", STOP_WAIT)
        except (OSError, EOFError):
            pass  # it is gone: the reconciler records what it left
        finally:
            pipe.close()
            process.join(1)
            if process.is_alive():
                process.kill()
                process.join(1)

    def _ready(self) -> Pipe | None:
        if self._process is not None and not self._process.is_alive():
            self._lost(None)
        if self._process is None:
            try:
                self._start()
            except OSError as exc:  # no process to be had: the horse writes itself (tracking's fallback)
                log.warning("cannot start the bookkeeper (%s): this job's attempt is written by its horse", exc)
                return None
        return self._pipe

    def _start(self) -> None:
        ours, theirs = multiprocessing.Pipe()
        process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(theirs, ours, os.getpid()), name="bookkeeper", daemon=True)
        process.start()
        theirs.close()
        self._pipe, self._process = ours, process
        log.info("bookkeeper started (pid %s)", process.pid)

    def _lost(self, exc: BaseException | None) -> None:
        process, self._process = self._process, None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        code = process.exitcode if process is not None else None
        log.warning("the bookkeeper is gone (%s): starting another; the reconciler records any success it "
                    "had not written", f"exit code {code}" if exc is None else type(exc).__name__)


# Plain pickle: multiprocessing's own send() copies the copyreg dispatch table for every message, and
# in a horse just forked every page touched faults (0.45 ms a message here against 0.7-1.2 ms).
def _send(pipe: Pipe, message: tuple) -> None:
    pipe.send_bytes(pickle.dumps(message))


def _receive(pipe: Pipe) -> tuple:
    return pickle.loads(pipe.recv_bytes())


def _serve(pipe: Pipe, workers_end: Pipe, worker_pid: int) -> None:
    """The bookkeeper process: answer openings, write successes, in the order the worker sent them."""
    workers_end.close()  # so the pipe ends (EOFError) when the worker is gone
    # The worker tells it when to stop (after its own warm shutdown): a Ctrl-C reaching the whole
    # process group must not end it before the last success is written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stores.keep_quiet(False)  # the worker no longer writes attempts: this process says when the database is away
    held = HeldConnection()
    opener = tracking.opener_on(held.transaction)
    try:
        while True:
            if not pipe.poll(PARENT_LOOK):
                if os.getppid() != worker_pid:  # the worker died (a horse may still hold its end)
                    return
                continue
            message = _receive(pipe)
            if message[0] == "open":
                _send(pipe, ("opened", message[1], opener(*message[1:])))
            elif message[0] == "success":
                tracking.write_success(held.transaction, *message[1:])
            else:  # "stop": everything sent before is written
                _send(pipe, ("stopped", None, None))
                return
    except (EOFError, OSError):
        return  # the worker is gone
    finally:
        held.close()
