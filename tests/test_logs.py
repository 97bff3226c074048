"""Logs: one line per event with role, queue, job, task and attempt; secrets never shown."""

from __future__ import annotations

import logging

import pytest

from conftest import wait_for
from helpers import settled
from openvle import logs
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
