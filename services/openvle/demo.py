"""`openvle demo` / `make demo`: a 10-person lab deployed on the dev system, with its progress, then
where to look at what it made.

With `make dev` running in this directory (its embedded Redis is found at var/redis/redis.sock when
REDIS_URL is unset; SQLite is var/openvle.sqlite3 either way) the demo uses that system. Otherwise it
starts one itself, `openvle dev` as a background process logging to var/demo-dev.log, waits until it
is ready, runs the demo and stops it (SIGTERM: the same clean stop as Ctrl-C in `make dev`); on a
terminal it first waits for Enter, so the links it printed can be opened.

Each run creates a new event ("Demo Lab", "Demo Lab 2", …) for the same template and people, so
running it twice never fails.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from openvle.cli_base import EXIT_FAILED, EXIT_OK, StoreError, check_database, guarded, use_dev_redis
from openvle.cli_progress import report, watch
from openvle.settings import Settings, get_settings
from openvle.settings_help import mask_url

TEMPLATE = {"name": "demo-ubuntu", "pve_vmid": 9001, "node": "pve1", "clone_mode": "linked", "protocol": "rdp",
            "moodle_course_id": 2}
EVENT_NAME = "Demo Lab"
PARTICIPANTS = [{"username": f"demo{i:02d}", "email": f"demo{i:02d}@example.org", "first_name": "Demo",
                 "last_name": f"Student {i:02d}"} for i in range(1, 11)]
TEACHERS = [{"username": "demo-teacher", "email": "demo-teacher@example.org", "first_name": "Demo",
             "last_name": "Teacher"}]
DEV_LOG = Path("var") / "demo-dev.log"
START_TIMEOUT = 120
STOP_TIMEOUT = 90


def say(line: str = "") -> None:
    print(line, flush=True)


def run(settings: Settings, pause: bool = True) -> int:
    from openvle.cli_base import quiet_logs

    quiet_logs(settings)
    own: DevSystem | None = None
    try:
        if _system_ready(settings):
            say(f"demo | using the running dev system (Redis {mask_url(get_settings().REDIS_URL)})")
        else:
            own = DevSystem.start()
        code = guarded(_demo)
        if own is not None and pause and code in (EXIT_OK, EXIT_FAILED) and sys.stdin.isatty():
            _pause()
        return code
    except StoreError as exc:
        print(f"openvle: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return 130
    finally:
        if own is not None:
            own.stop()


def _pause() -> None:
    try:
        input("demo | the dev system the demo started keeps running so you can open these; "
              "press Enter (or Ctrl-C) to stop it ")
    except (EOFError, KeyboardInterrupt):
        say()


# --- the system -------------------------------------------------------------------------------------


def _workers(redis) -> set[str]:
    """The queues some live worker listens on."""
    from rq import Worker

    return {q for w in Worker.all(connection=redis) for q in w.queue_names()}


def _system_ready(settings: Settings) -> bool:
    """A dev system (or any) runs on these stores: workers for the event queues are registered.

    REDIS_URL unset and no live var/redis/redis.sock means no `make dev` here: its Redis would be
    that socket, so redis://localhost:6379 is not even asked."""
    if not os.environ.get("REDIS_URL"):
        return False
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        redis = Redis.from_url(get_settings().REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
        return {"core_periodic", "pve_vm_clone"} <= _workers(redis)
    except RedisError:
        return False


class DevSystem:
    """`openvle dev` started by the demo, in its own session, its output in var/demo-dev.log."""

    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process, self.log_path = process, log_path

    @classmethod
    def start(cls) -> DevSystem:
        DEV_LOG.parent.mkdir(parents=True, exist_ok=True)
        log = open(DEV_LOG, "w")
        say(f"demo | no dev system is running here: starting `openvle dev` in the background (log: {DEV_LOG})")
        process = subprocess.Popen(
            [sys.executable, "-m", "openvle", "dev"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)  # Ctrl-C here is ours to pass on
        log.close()
        system = cls(process, DEV_LOG)
        try:
            system.wait_until_ready()
        except BaseException:
            system.stop()
            raise
        return system

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(line.strip() for line in text[-lines:])

    def wait_until_ready(self) -> None:
        from redis import Redis
        from redis.exceptions import RedisError

        deadline = time.monotonic() + START_TIMEOUT
        redis_url = os.environ.get("REDIS_URL")
        while True:
            if self.process.poll() is not None:
                raise StoreError(f"the dev system exited with {self.process.returncode} before it was ready "
                                 f"(see {self.log_path}): {self.tail()}")
            if time.monotonic() > deadline:
                raise StoreError(f"the dev system was not ready after {START_TIMEOUT}s (see {self.log_path}): "
                                 f"{self.tail()}")
            if redis_url is None:
                redis_url = use_dev_redis()  # its embedded Redis, once it answers
            if redis_url is not None:
                try:
                    redis = Redis.from_url(get_settings().REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
                    if {"core_periodic", "pve_vm_clone"} <= _workers(redis):
                        say(f"demo | dev system ready (pid {self.process.pid})")
                        return
                except RedisError:
                    pass
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        say("demo | stopping the dev system the demo started…")
        self.process.send_signal(signal.SIGTERM)  # `openvle dev` stops its roles and its Redis cleanly
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"demo | it did not stop in {STOP_TIMEOUT}s; killing it (see {self.log_path})")
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        say(f"demo | dev system stopped (exit {self.process.returncode})")


# --- the demo ---------------------------------------------------------------------------------------


def _demo() -> int:
    from openvle.db.models import utcnow
    from openvle.lab_events import create_event, create_template, request_deploy

    check_database()
    template_id = create_template(**TEMPLATE)
    say(f"demo | template {template_id} {TEMPLATE['name']!r}: Proxmox VM {TEMPLATE['pve_vmid']} on "
        f"{TEMPLATE['node']} (the sandbox's shared-storage template), Moodle course {TEMPLATE['moodle_course_id']}")
    name = _free_name(EVENT_NAME)
    start = (utcnow() + dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    event_id = create_event(name, template_id, start, start + dt.timedelta(hours=8), participants_=PARTICIPANTS,
                            teachers=TEACHERS, description="Created by `openvle demo`.")
    say(f"demo | event {event_id} {name!r}: {start:%Y-%m-%d %H:%M} UTC for 8 hours, {len(PARTICIPANTS)} "
        f"participants ({PARTICIPANTS[0]['username']}…{PARTICIPANTS[-1]['username']}) and a teacher")
    asked = request_deploy(event_id, requested_by="demo")
    say(f"demo | deploy requested: task {asked.task_id}")
    say()
    final = watch(event_id)
    say()
    code = report(final, "event.deploy")
    say()
    _where_to_look(event_id, asked.task_id)
    return code


def _free_name(base: str) -> str:
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Event

    with session_scope() as session:
        taken = set(session.execute(select(Event.name).where(Event.name.like(f"{base}%"))).scalars())
    if base not in taken:
        return base
    return next(f"{base} {n}" for n in range(2, len(taken) + 3) if f"{base} {n}" not in taken)


def _where_to_look(event_id: int, task_id: int) -> None:
    settings = get_settings()
    host = _shown_host(settings.SANDBOX_HOST)
    pve = f"https://{host}:{settings.SANDBOX_PVE_PORT}/_sandbox/state"
    guac = f"http://{host}:{settings.SANDBOX_GUACAMOLE_PORT}/guacamole/_sandbox/state"
    moodle = f"http://{host}:{settings.SANDBOX_MOODLE_PORT}/_sandbox/state"
    mail = f"http://{host}:{settings.SANDBOX_MAIL_HTTP_PORT}/"
    api = f"http://{_shown_host(settings.BACKEND_HOST)}:{settings.BACKEND_PORT}/api/tasks"
    found = _what_was_made(event_id, pve, guac, moodle, mail)
    say("Where to look:")
    rows = [
        ("Proxmox sandbox", pve, found.get("pve")),
        ("Guacamole connections", guac, found.get("guac")),
        ("Moodle course", moodle, found.get("moodle")),
        ("caught emails", mail, found.get("mail")),
        ("the API", api, f"this deploy: {api}/{task_id}"),
    ]
    width = max(len(label) for label, _, _ in rows)
    for label, url, what in rows:
        say(f"  {label:<{width}}  {url}" + (f"\n  {'':<{width}}  ({what})" if what else ""))
    say(f"  {'the event':<{width}}  openvle event show {event_id}")


def _shown_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _what_was_made(event_id: int, pve: str, guac: str, moodle: str, mail: str) -> dict[str, str]:
    """What the sandbox holds for this event, read from its admin endpoints (best effort)."""
    import httpx
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Event, Vm

    with session_scope() as session:
        vms = session.execute(select(Vm.vmid, Vm.guac_connection_id).where(Vm.event_id == event_id)).all()
        course_id, name = session.execute(select(Event.moodle_course_id, Event.name).where(Event.id == event_id)).one()
    subject = f"Your lab for {name} is ready"  # mail_templates/event_deployed.subject.txt
    vmids = {v.vmid for v in vms if v.vmid}
    connections = {str(v.guac_connection_id) for v in vms if v.guac_connection_id}
    emails = {p["email"] for p in PARTICIPANTS}
    found: dict[str, str] = {}
    ca = Path(get_settings().SANDBOX_DIR) / "pve-ca.pem"
    try:
        with httpx.Client(timeout=5, verify=str(ca) if ca.exists() else False) as client:
            running = [v for v in client.get(pve).json()["vms"] if v["vmid"] in vmids and v["status"] == "running"]
            found["pve"] = f"{len(running)} VMs of this event running: {', '.join(str(v['vmid']) for v in running)}"
    except Exception:
        pass
    try:
        made = [c for c in httpx.get(guac, timeout=5).json()["connections"] if str(c.get("identifier")) in connections]
        found["guac"] = f"{len(made)} connections for this event"
    except Exception:
        pass
    try:
        course = next((c for c in httpx.get(moodle, timeout=5).json()["courses"] if c["id"] == course_id), None)
        if course is not None:
            found["moodle"] = f"course {course_id} {course.get('shortname', '')!r} with " \
                              f"{len(course.get('enrolments', []))} enrolments"
    except Exception:
        pass
    try:
        messages = httpx.get(mail.rstrip("/") + "/messages", timeout=5).json()
        ours = [m for m in messages if set(m.get("rcpt_tos", [])) & emails and m.get("subject") == subject]
        found["mail"] = f"{len(ours)} access emails: {subject!r}"
    except Exception:
        pass
    return found
