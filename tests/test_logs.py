"""Logs: one line per event with role, queue, job, task and attempt; secrets never shown."""

from __future__ import annotations

import gc
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from conftest import wait_for
from faults.proxy import FaultProxy
from helpers import settled
from openvle import logs
from openvle.db.engine import build_engine
from openvle.enqueue import enqueue_operation

TOKEN = "a1b2c3d4-pve-token-secret"
DB_PASSWORD = "db-secret-pass-99"


@pytest.fixture
def our_log_setup():
    """logs.setup() in this process, undone after: its handler writes to this test's captured stdout,
    which is closed once the test ends (later log lines would meet a closed file)."""
    root = logging.getLogger()
    level = root.level
    yield
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, logs._Formatter)]
    root.setLevel(level)


def test_formatter_masks_secrets_and_url_passwords_and_keeps_one_line(capsys, our_log_setup):
    logs.setup("worker", "INFO", [TOKEN])
    with logs.job_context(queue="mails", job_id="j1", task_id=7, attempt="2/6"):
        logging.getLogger("openvle.test").warning(
            "calling %s with token %s\nsecond line", f"mysql+pymysql://u:{DB_PASSWORD}@db/x", TOKEN)
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert TOKEN not in line and DB_PASSWORD not in line
    assert "role=worker queue=mails job=j1 task=7 attempt=2/6 openvle.test:" in line
    assert "mysql+pymysql://u:********@db/x" in line and "| second line" in line


def test_a_secret_in_a_job_error_reaches_neither_the_log_nor_the_task(start_role, settings_env):
    settings_env(PVE_TOKEN_VALUE=TOKEN)
    worker = start_role("worker", PVE_TOKEN_VALUE=TOKEN)
    task = enqueue_operation("demo.mails", {"permanent": True, "error_message": f"401 for token {TOKEN}"})

    done = wait_for(lambda: settled(task.id), 20, "the task", worker)

    assert done.error == "401 for token ********"
    assert done.subtasks[0].error == "401 for token ********"
    output = worker.output
    assert f"task={task.id}" in output and "failed for good" in output
    assert TOKEN not in output


def test_lines_about_a_task_name_its_own_job_and_attempts_not_the_reconcilers(capsys, our_log_setup, clean):
    from rq.job import Job

    from openvle import records
    from openvle.connections import get_redis
    from openvle.db.engine import get_engine
    from openvle.reconcile import reconcile

    task = enqueue_operation("demo.guacamole", {})  # guacamole allows 6 attempts (WORKER_MAX_RETRY 5)
    with get_engine().begin() as conn:
        records.begin_attempt(conn, task.id, "worker@gone")
    Job.fetch(task.rq_job_id, connection=get_redis()).delete()  # its worker and job are gone
    logs.setup("worker", "INFO")

    with logs.job_context(queue="core_periodic", job_id="the-reconcile-job", task_id=99, attempt="1/4"):
        reconcile(grace_seconds=0)

    lines = capsys.readouterr().out.splitlines()
    lost = [line for line in lines if "attempt lost" in line]
    assert lost, lines
    assert all(f"queue=guacamole job={task.rq_job_id} task={task.id} attempt=1/6 " in line for line in lost), lost
    assert not any("the-reconcile-job" in line for line in lines if f"task={task.id}" in line), lines


def test_a_connection_lost_while_the_pool_drops_it_is_one_warning_line_not_a_traceback(capsys, our_log_setup,
                                                                                       clean):
    if not clean.database_url.startswith("mysql"):
        pytest.skip("cuts MariaDB through the fault proxy")
    proxy = FaultProxy.for_database(clean.database_url)
    engine = build_engine(proxy.url)
    logs.setup("worker", "INFO", [])
    try:
        session = Session(engine)
        session.execute(text("SELECT 1"))
        proxy.cut()  # MariaDB goes away while the session holds its connection
        del session  # left to the garbage collector, as an error path may leave it
        gc.collect()  # the pool rolls the connection back on return: that fails
    finally:
        proxy.stop()
        engine.dispose()
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    assert "WARNING" in out and "sqlalchemy.pool" in out and "Traceback" not in out, out
    assert "a pooled database connection could not be reset or closed (OperationalError: " in out, out
    assert "it is dropped and the next use opens a new one" in out, out
