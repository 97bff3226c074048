"""The events CLI as people run it: `python -m openvle template|event …` as separate processes on the
test stores; deploys run on real workers against the simulators (see test_events.py)."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

import test_events
from conftest import ROOT, WAIT_SCALE, Stores
from openvle.cli_progress import _LiveView
from openvle.db.engine import session_scope
from openvle.db.models import Event, Template, User, utcnow
from openvle.lab_events import create_event, create_template

sims = test_events.sims  # the simulators (module scope) and their per-test reset, shared with test_events
lab = test_events.lab

TEMPLATE_YAML = """\
name: ubuntu-cli
pve_vmid: 9001
node: pve1
clone_mode: linked
protocol: rdp
moodle_course_id: 2
"""

EVENT_YAML = """\
name: CLI Lab
description: Made from a YAML file.
template: ubuntu-cli
start: 2030-05-04T11:00:00+02:00   # 09:00 UTC
end: 2030-05-04T17:00:00Z
participants:
  - {username: student01, email: student01@uni.example, first_name: Ada, last_name: One}
  - {username: Student02, email: student02@uni.example, first_name: Bo, last_name: Two}
  - {username: student03, email: student03@uni.example, first_name: Cy, last_name: Three}
teachers:
  - {username: teacher01, email: teacher01@uni.example, first_name: Tea, last_name: Cher}
status: scheduled
"""


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openvle", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout * WAIT_SCALE)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_template_and_event_from_yaml_then_list_and_show(clean: Stores, tmp_path):
    env = clean.env()

    made = cli(env, "template", "create", "-f", write(tmp_path, "template.yaml", TEMPLATE_YAML))
    assert made.returncode == 0, made.stderr
    template_id = int(made.stdout.strip())
    again = cli(env, "template", "create", "-f", str(tmp_path / "template.yaml"))  # an upsert by name
    assert again.returncode == 0 and int(again.stdout) == template_id and "updated template" in again.stderr

    created = cli(env, "event", "create", "-f", write(tmp_path, "event.yaml", EVENT_YAML))
    assert created.returncode == 0, created.stderr
    event_id = int(created.stdout.strip())
    with session_scope() as session:
        event = session.get(Event, event_id)
        template = session.get(Template, template_id)
    assert (event.start_at, event.end_at) == (dt.datetime(2030, 5, 4, 9), dt.datetime(2030, 5, 4, 17))  # naive UTC
    assert event.template_id == template_id and event.status == "scheduled" and template.port == 3389

    listed = cli(env, "event", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "START", "(UTC)", "END", "(UTC)", "PARTICIPANTS"]
    assert re.fullmatch(rf"\s*{event_id}  CLI Lab\s+scheduled  2030-05-04 09:00  2030-05-04 17:00\s+3", row), row
    for column, value in (("STATUS", "scheduled"), ("START", "2030"), ("END", "2030-05-04 17")):
        assert header.index(column) == row.index(value), (column, listed.stdout)  # aligned columns
    assert header.index("PARTICIPANTS") + len("PARTICIPANTS") == len(row)  # counts right-aligned

    shown = cli(env, "event", "show", str(event_id))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith(f"event {event_id}: CLI Lab\n")
    assert re.search(r"status\s+scheduled", text) and re.search(r"reason\s+-", text)
    assert re.search(r"template\s+ubuntu-cli \(VM 9001 on pve1", text)
    assert "3 participant(s); teachers: teacher01" in text
    assert [line.split()[0] for line in text.splitlines() if line.strip().startswith("student")] == \
        ["student01", "student02", "student03"]  # user names are lower-cased
    assert "nothing deployed yet" in text


BAD_EVENT = dict(name="Bad", template="ubuntu-cli", start="2030-05-04T09:00:00Z", end="2030-05-04T17:00:00Z")


def event_yaml(**changes) -> str:
    fields = {**BAD_EVENT, **changes}
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None)


# (case, command, file content or None for a missing file, what the one line must name)
BAD_INPUT = [
    ("missing file", "event", None, "no such file"),
    ("invalid YAML", "event", "name: [Bad\ntemplate: x\n", "invalid YAML at line"),
    ("not a mapping", "event", "- a\n- b\n", "expected a mapping of fields"),
    ("missing field", "event", event_yaml(end=None), "end: missing"),
    ("unknown field", "event", event_yaml(colour="red"), "colour: unknown field"),
    ("time without timezone", "event", event_yaml(start="2030-05-04T09:00:00"), "start: '2030-05-04T09:00:00' has no "
                                                                               "timezone"),
    ("impossible date", "event", event_yaml(end="2030-02-30T17:00:00Z"), "end: '2030-02-30T17:00:00Z' is not a valid"),
    ("end before start", "event", event_yaml(end="2030-05-03T09:00:00Z"), "end: 2030-05-03T09:00:00+00:00 is not "
                                                                          "after start"),
    ("unknown template", "event", event_yaml(template="windows-11"), "template: no template 'windows-11'"),
    ("bad participant email", "event", event_yaml() + "participants:\n  - {username: a1, email: a1@x.org}\n"
                                                      "  - {username: a2, email: nope}\n",
     "participants[2].email: 'nope' is not an email address"),
    ("bad status", "event", event_yaml(status="deployed"), "status: 'deployed' is not allowed"),
    ("participant twice", "event", event_yaml() + "participants:\n  - {username: a1, email: a1@x.org}\n"
                                                  "  - {username: A1, email: other@x.org}\n",
     "participants[2].username: 'a1' is already participants[1]: list each person once"),
    ("email twice", "event", event_yaml() + "participants:\n  - {username: a1, email: a1@x.org}\n"
                                            "teachers:\n  - {username: t1, email: A1@x.org}\n",
     "teachers[1].email: 'a1@x.org' is already participants[1]"),
    ("teacher without names (the template has a Moodle course)", "event",
     event_yaml() + "teachers:\n  - {username: t1, email: t1@x.org}\n",
     "teachers[1] (t1): first_name is missing: the event's Moodle course enrols nobody without a first and a last "
     "name"),
    ("participant without a last name", "event",
     event_yaml() + "participants:\n  - {username: a1, email: a1@x.org, first_name: Ada}\n",
     "participants[1] (a1): last_name is missing"),
    ("end already past", "event", event_yaml(start="2020-05-04T09:00:00Z", end="2020-05-04T17:00:00Z"),
     "its end (2020-05-04 17:00 UTC) is already past"),
    ("template missing fields", "template", "name: t\nnode: pve1\n", "pve_vmid: missing"),
    ("template bad clone mode", "template", "name: t\npve_vmid: 9001\nnode: pve1\nclone_mode: thin\n",
     "clone_mode: 'thin' is not allowed"),
]


def test_bad_input_is_one_line_naming_the_problem_and_exit_2(clean: Stores, tmp_path):
    env = clean.env()
    create_template("ubuntu-cli", pve_vmid=9001, node="pve1", moodle_course_id=2)
    scheduled = create_event("Fine", "ubuntu-cli", dt.datetime(2030, 5, 4, 9), dt.datetime(2030, 5, 4, 17))
    runs = []
    for i, (case, noun, content, _) in enumerate(BAD_INPUT):
        path = tmp_path / f"bad-{i}.yaml"
        if content is not None:
            path.write_text(content)
        runs.append((case, [noun, "create", "-f", str(path)]))
    runs += [("unknown event", ["event", "deploy", "999"]), ("unknown event to show", ["event", "show", "999"]),
             ("retry with nothing failed", ["event", "retry", str(scheduled)])]
    expected = [e for *_, e in BAD_INPUT] + ["event 999 does not exist", "event 999 does not exist",
                                             f"event {scheduled} is scheduled: nothing failed"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda run: cli(env, *run[1]), runs))

    for (case, _), wanted, result in zip(runs, expected, results, strict=True):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (case, result.returncode, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("openvle: "), (case, result.stderr)
        assert wanted in lines[0], (case, lines[0])
        assert "Traceback" not in result.stderr + result.stdout and result.stdout == "", (case, result.stdout)
    with session_scope() as session:
        assert session.execute(select(Event.name)).scalars().all() == ["Fine"]  # nothing half-made
        assert session.execute(select(User.username)).scalars().all() == []  # not even its people


def small_event(name: str, n: int = 2) -> int:
    create_template("ubuntu-cli", pve_vmid=9001, node="pve1", protocol="rdp", moodle_course_id=2)
    start = utcnow() + dt.timedelta(days=3)
    return create_event(name, "ubuntu-cli", start, start + dt.timedelta(hours=8),
                        participants_=test_events.people(n), teachers=test_events.people(1, "teacher"))


def task_id_in(output: str) -> int:
    return int(re.search(r"task (\d+)", output).group(1))


def test_deploy_is_deduplicated_and_wait_follows_it_to_deployed_then_archive(lab, clean: Stores, start_role):
    env = clean.env(**lab["env"])
    event_id = small_event("CLI Deploy")

    first = cli(env, "event", "deploy", str(event_id))  # no worker yet: it stays in flight
    second = cli(env, "event", "deploy", str(event_id))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "deploy requested, task" in first.stdout and "already in flight, task" in second.stdout
    assert task_id_in(second.stdout) == task_id_in(first.stdout)

    # --wait attaches to the deploy in flight (its first line says so) before any worker runs it.
    waiting = subprocess.Popen([sys.executable, "-m", "openvle", "event", "deploy", str(event_id), "--wait"],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    attached = waiting.stdout.readline()
    assert "already in flight" in attached, attached + waiting.stderr.read()
    test_events.start_workers(start_role, lab)
    rest, errors = waiting.communicate(timeout=120 * WAIT_SCALE)

    out = attached + rest
    assert waiting.returncode == 0, out + errors
    assert task_id_in(out) == task_id_in(first.stdout)
    assert "\x1b[" not in out  # not a terminal: plain lines, no cursor movement
    progress_lines = [line for line in out.splitlines() if line.startswith("[")]
    assert progress_lines and all(re.match(r"\[\d+:\d\d\] ", line) for line in progress_lines), out
    for stage in stages_of("deploy"):
        assert re.search(rf"\| {stage} \d+/\d+", out), (stage, out)
    # email: each participant's access and the teacher's login; course_email: each participant's course link
    assert re.search(r"\| clone 2/2 \| start 2/2 \| access 2/2 \| course 1/1 \| enrol 1/1 \| email 3/3 "
                     r"\| course_email 2/2", out), out
    assert out.rstrip().endswith(f"event {event_id} (CLI Deploy): deployed"), out

    shown = cli(env, "event", "show", str(event_id)).stdout
    assert re.search(r"student01\s+done\s+done\s+done\s+done", shown) and "course steps: course done, enrol done" \
        in shown, shown

    archived = cli(env, "event", "archive", str(event_id), "--wait")
    assert archived.returncode == 0, archived.stdout + archived.stderr
    for stage in stages_of("archive"):
        assert re.search(rf"\| {stage} \d+/\d+", archived.stdout), (stage, archived.stdout)
    assert archived.stdout.rstrip().endswith("archived")


def stages_of(kind: str) -> tuple[str, ...]:
    from openvle.cli_progress import ARCHIVE_STAGES, DEPLOY_STAGES

    return DEPLOY_STAGES if kind == "deploy" else ARCHIVE_STAGES


def test_a_failure_exits_1_with_the_reason_and_retry_completes(lab, clean: Stores, start_role):
    env = clean.env(**lab["env"])
    lab["mail"].state.reject(["student02@uni.example"])
    test_events.start_workers(start_role, lab)
    event_id = small_event("CLI Flaky")

    failed = cli(env, "event", "deploy", str(event_id), "--wait")

    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "email 1/2 (1 failed)" in failed.stdout
    assert f"event {event_id} (CLI Flaky): deployed with failures\n  reason: student02: email failed:" in failed.stdout

    lab["mail"].state.reject([])
    retried = cli(env, "event", "retry", str(event_id), "--wait")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "deploy requested" in retried.stdout and retried.stdout.rstrip().endswith("deployed")


def test_on_a_terminal_the_bars_are_redrawn_in_place():
    class Terminal(io.StringIO):
        encoding = "utf-8"

        def isatty(self):
            return True

    out = Terminal()
    view = _LiveView(out)
    shown = {"event_id": 7, "name": "Lab", "status": "deploying", "operation": "event.deploy", "percent": 40,
             "steps": 10, "settled": 4, "stages": {"clone": {"done": 2, "running": 1, "queued": 1},
                                                   "email": {"failed": 1, "queued": 3}}}
    view.draw(shown, 3.0, False, None)
    first = out.getvalue()
    view.draw(shown, 4.0, False, None)
    view.close()
    redraw = out.getvalue()[len(first):]

    assert "Deploy of Lab (event 7)   40%  4/10 steps  0:03" in first
    assert re.search(r"clone\s+.*2/4 \(1 running, 1 queued\)", first) and "email" in first
    bar = re.search(r"clone\s+(\S+)", first).group(1)
    assert re.sub(r"\x1b\[[0-9;]*m", "", bar) == "█" * 15 + "▒" * 8 + "·" * 7  # 2 done, 1 running, 1 queued of 30
    assert redraw.startswith("\x1b[3F\x1b[J")  # back up over the 3 lines drawn, then draw again
    assert redraw.endswith("\x1b[?25h")  # the cursor is given back
