"""`openvle template …` and `openvle event …`: templates and events from YAML files, deploy, archive
and retry, with a live progress view.

Bad input (a missing file, invalid YAML, a missing or unknown field, a bad date, an unknown template,
a request the event's state does not allow) is one line on stderr saying what is wrong and how to fix
it, and exit code 2. A store that does not answer is one line and exit code 1. Never a traceback.

When REDIS_URL is unset and `make dev` runs in this directory, its embedded Redis
(var/redis/redis.sock) is used, so these commands talk to the same stores as the dev system.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from openvle.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DEV_REDIS_SOCKET = Path("var") / "redis" / "redis.sock"
DEPLOY_STAGES = ("clone", "start", "access", "course", "enrol", "email", "course_email")
ARCHIVE_STAGES = ("access", "stop", "delete", "account", "email", "course")
SUSPEND_STAGES = ("revoke", "stop")
RUN_STAGES = {"event.archive": ARCHIVE_STAGES, "event.suspend": SUSPEND_STAGES}  # else the deploy's (resume too)
PARTICIPANT_STAGES = ("clone", "start", "access", "revoke", "stop", "delete", "account", "email", "course_email")
EVENT_STAGES = ("course", "enrol")
SETTLED_OK = {"event.deploy": "deployed", "event.archive": "archived", "event.suspend": "suspended",
              "event.resume": "deployed"}
EXAMPLE_TIME = "2026-05-04T09:00:00Z"  # as in specs.py, without importing pydantic here


class CliError(Exception):
    """Bad input: one line on stderr, exit 2."""

    code = EXIT_USAGE


class StoreError(CliError):
    """Redis or the database does not answer (or the schema is behind): one line, exit 1."""

    code = EXIT_FAILED


# --- the stores ---------------------------------------------------------------------------------------


def use_dev_redis() -> str | None:
    """REDIS_URL unset and a live `make dev` Redis in ./var/redis: use that one (and say so)."""
    if os.environ.get("REDIS_URL"):
        return None
    socket = DEV_REDIS_SOCKET.resolve()
    if not socket.exists():
        return None
    from redis import Redis

    url = f"unix://{socket}"
    try:
        Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping()
    except Exception:  # a socket file left by a dev run that was killed
        return None
    os.environ["REDIS_URL"] = url
    from openvle.settings import get_settings

    get_settings.cache_clear()
    return url


def check_database() -> None:
    """The schema must be at head before the CLI reads or writes anything."""
    from sqlalchemy.exc import SQLAlchemyError

    from openvle.db.engine import get_engine
    from openvle.db.schema import current_revision, head_revision
    from openvle.settings import get_settings
    from openvle.settings_help import mask_url

    url = mask_url(get_settings().DATABASE_URL)
    try:
        current = current_revision(get_engine())
    except SQLAlchemyError as exc:
        raise StoreError(f"the database at {url} is not reachable ({_first_line(getattr(exc, 'orig', exc))}): "
                         "check DATABASE_URL") from None
    head = head_revision()
    if current != head:
        raise StoreError(f"the database at {url} has schema {current or 'none'}, this version needs {head}: "
                         "run `openvle migrate` (or `make dev`, which migrates)")


def _first_line(value: object) -> str:
    return (str(value).strip().splitlines() or [type(value).__name__])[0]


# --- argument parsing ---------------------------------------------------------------------------------


def _event_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id: give the number `openvle event list` shows")
    return int(text)


def add_commands(commands: argparse._SubParsersAction) -> None:
    template = commands.add_parser("template", help="create VM templates from YAML files")
    actions = template.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create (or update, by name) a template from a YAML file")
    create.add_argument("-f", "--file", required=True, metavar="FILE",
                        help="YAML with name, pve_vmid, node, clone_mode, protocol, port, moodle_course_id "
                             "(- reads standard input)")

    event = commands.add_parser("event", help="create, list, show, deploy, archive, suspend, resume and retry events")
    actions = event.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an event from a YAML file; prints its id")
    create.add_argument("-f", "--file", required=True, metavar="FILE",
                        help="YAML with name, description, template, start, end, participants, teachers, status, "
                             "suspend_at, resume_at, deploy_mode "
                             "(- reads standard input)")
    actions.add_parser("list", help="every event: id, name, status, start, end, participants")
    show = actions.add_parser("show", help="an event, its status reason and each participant's steps")
    show.add_argument("id", type=_event_id, metavar="ID")
    mode = actions.add_parser("deploy-mode", help="how a draft or scheduled event is deployed: daily "
                                                  "(EVENTS_START_PREP_TIME_DAYS before its start) or ready_by_start "
                                                  "(in batches inside DEPLOY_WINDOW_HOURS before it)")
    mode.add_argument("id", type=_event_id, metavar="ID")
    mode.add_argument("mode", choices=("daily", "ready_by_start"), metavar="MODE", help="daily or ready_by_start")
    for name, text in (("deploy", "deploy the event (again: re-runs only what is missing)"),
                       ("archive", "archive the event: access, VMs, accounts, course"),
                       ("suspend", "a break: stop every VM and take Guacamole access away (VMs, people and "
                                   "course are kept)"),
                       ("resume", "end the break: start every VM and give access back (same links and passwords)"),
                       ("retry", "re-run what failed: the deploy of an event deployed with failures, "
                                 "the archive of an event whose archive failed")):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", type=_event_id, metavar="ID")
        action.add_argument("--wait", action="store_true",
                            help="show live progress until the event settles; exit 0 when it succeeded, 1 if not")
        action.add_argument("--timeout", type=float, metavar="SECONDS",
                            help="with --wait: stop waiting after this long (exit 1; the work goes on)")
        if name == "deploy":
            action.add_argument("--override-capacity", action="store_true",
                                help="deploy although the event does not fit the cluster (`event show` gives the "
                                     "numbers); recorded in the audit log")


def _vm_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a VM id: give the number `openvle event show` or "
                                         "GET /api/vms shows")
    return int(text)


def add_vm_commands(commands: argparse._SubParsersAction) -> None:
    vm = commands.add_parser("vm", help="a fresh start of one VM")
    actions = vm.add_subparsers(dest="action", metavar="ACTION", required=True)
    fresh = actions.add_parser("fresh-start", help="a new copy of the template in place of the VM: clone new, move "
                                                   "its Guacamole connection over (same link and password), delete "
                                                   "the old; once per RESET_TO_TEMPLATE_COOLDOWN")
    fresh.add_argument("id", type=_vm_id, metavar="VM_ID", help="the VM record's id (as the API and pages show it)")
    fresh.add_argument("--wait", action="store_true", help="wait until it settled; exit 0 when it succeeded, 1 if not")
    fresh.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="with --wait: stop waiting after this long (exit 1; the work goes on)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run `openvle template|event ACTION`; every expected problem is one line, never a traceback."""
    _quiet_logs(settings)
    handler = {
        ("template", "create"): template_create,
        ("event", "create"): event_create,
        ("event", "list"): event_list,
        ("event", "show"): event_show,
        ("event", "deploy-mode"): event_deploy_mode,
        ("event", "deploy"): event_deploy,
        ("event", "archive"): event_archive,
        ("event", "suspend"): event_suspend,
        ("event", "resume"): event_resume,
        ("event", "retry"): event_retry,
        ("vm", "fresh-start"): vm_fresh_start,
    }[(args.command, args.action)]
    return guarded(lambda: handler(args))


def guarded(body) -> int:
    """Run `body`; the problems people can fix are one line on stderr and an exit code."""
    try:
        return body()
    except CliError as exc:
        fail(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # classified here, so bad input never pays for importing the stores' libraries
        code = _explain(exc)
        if code is None:
            raise
        return code


def _explain(exc: Exception) -> int | None:
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from openvle.errors import QueueUnavailable
    from openvle.events import EventError
    from openvle.settings import get_settings
    from openvle.settings_help import mask_url

    if isinstance(exc, EventError):
        fail(f"{exc} (see `openvle event list` and `openvle event show ID`)")
        return EXIT_USAGE
    from openvle.errors import RequestError

    if isinstance(exc, RequestError):
        fail(str(exc))
        return EXIT_USAGE
    if isinstance(exc, QueueUnavailable):
        fail(str(exc))
        return EXIT_FAILED
    if isinstance(exc, RedisError):
        fail(f"Redis at {mask_url(get_settings().REDIS_URL)} is not reachable ({_first_line(exc)}): "
             "start `make dev` in this directory (its Redis is found by itself) or set REDIS_URL")
        return EXIT_FAILED
    if isinstance(exc, SQLAlchemyError):
        fail(f"the database at {mask_url(get_settings().DATABASE_URL)} failed: "
             f"{_first_line(getattr(exc, 'orig', None) or exc)}")
        return EXIT_FAILED
    return None


def fail(message: str) -> None:
    print(f"openvle: {' '.join(message.split())}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(f"openvle: {message}", file=sys.stderr, flush=True)


def _quiet_logs(settings: Settings) -> None:
    """The CLI's own output is for people: log lines only from WARNING up, and on stderr."""
    import logging

    from openvle import logs

    logs.setup("cli", "WARNING" if settings.LOG_LEVEL in ("DEBUG", "INFO") else settings.LOG_LEVEL,
               settings.secrets())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)


# --- YAML files and their models --------------------------------------------------------------------


def load_yaml(path: str) -> tuple[str, Any]:
    """(the name to show in messages, the parsed document). ISO times stay strings: pydantic parses them."""
    import yaml

    shown = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{shown}: no such file: check the path given to -f") from None
    except IsADirectoryError:
        raise CliError(f"{shown}: is a directory, not a YAML file: give the file's path to -f") from None
    except UnicodeDecodeError:
        raise CliError(f"{shown}: not UTF-8 text: save it as UTF-8 YAML") from None
    except OSError as exc:
        raise CliError(f"{shown}: cannot read it ({exc.strerror}): check the path and its permissions") from None
    try:
        return shown, yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        raise CliError(f"{shown}: invalid YAML{_yaml_where(exc)}: {_yaml_problem(exc)}") from None


def _yaml_where(exc) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(exc) -> str:
    problem = getattr(exc, "problem", None) or _first_line(exc)
    context = getattr(exc, "context", None)
    hint = " (fix the indentation or quote the value)" if "mapping values" in problem else ""
    return f"{problem}{' ' + context if context else ''}{hint}"


@functools.cache
def _loader():
    """A SafeLoader that leaves YAML's implicit timestamps as strings, so a time without a timezone
    or an impossible date reaches the model's check (and its message) instead of YAML's."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


HINTS = {
    "name": "a name, e.g. ubuntu-24.04 or Networks Lab",
    "pve_vmid": "the Proxmox id of the template VM, e.g. 9001",
    "node": "the Proxmox node the template lives on, e.g. pve1",
    "clone_mode": "linked or full",
    "protocol": "rdp, vnc or ssh",
    "port": "a TCP port, 1 to 65535; leave it out for the protocol's default",
    "moodle_course_id": "the id of the Moodle course to copy for each event",
    "template": "a template name or id (create one with `openvle template create -f FILE`)",
    "start": f"an ISO 8601 time with a timezone, e.g. {EXAMPLE_TIME}",
    "end": "an ISO 8601 time with a timezone, e.g. 2026-05-04T17:00:00Z",
    "participants": "a list of {username, email, first_name, last_name}",
    "teachers": "a list of {username, email, first_name, last_name}",
    "username": "lower-case letters, digits and . _ @ -",
    "email": "an email address",
    "status": "draft or scheduled",
}


def _models():
    """The YAML schemas: the same ones the API checks its JSON with (specs.py)."""
    from openvle.specs import EventSpec, TemplateSpec

    return TemplateSpec, EventSpec


def validate(model, data: Any, shown: str):
    from pydantic import ValidationError

    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        fields = ", ".join(model.model_fields)
        raise CliError(f"{shown}: expected a mapping of fields ({fields}), got {got}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error, model) for error in exc.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CliError(f"{shown}: {'; '.join(problems[:3])}{more}") from None


def _problem(error: dict, model) -> str:
    """One pydantic error as "field: problem, and how to fix it"."""
    loc = list(error["loc"])
    field = _where(loc)
    leaf = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    hint = HINTS.get(leaf)
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return f"{field}: missing: add `{leaf}: …` ({hint or 'required'})"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc, model)
        return f"{field}: unknown field: remove it or use one of {', '.join(allowed)}"
    if kind == "timezone_aware":
        return f"{field}: {error['input']!r} has no timezone: write it like {EXAMPLE_TIME} (UTC) or " \
               "2026-05-04T11:00:00+02:00"
    if kind.startswith(("datetime", "date_")):
        detail = message.split(",", 1)[1].strip() if "," in message else "not a date and time"
        return f"{field}: {error['input']!r} is not a valid time ({detail}): write ISO 8601 with a timezone, " \
               f"e.g. {EXAMPLE_TIME}"
    if kind == "value_error":
        text = message.removeprefix("Value error, ")
        if not loc:  # a model-level check names its field itself
            return text
        return f"{field}: {text}"
    if kind == "literal_error":
        return f"{field}: {error['input']!r} is not allowed: use {message.removeprefix('Input should be ')}"
    if kind == "list_type":
        return f"{field}: expected a list ({hint or 'a YAML list'})"
    if kind in ("model_type", "dict_type"):
        return f"{field}: expected a mapping ({hint or 'fields'})"
    if kind.startswith("int_"):
        return f"{field}: {error['input']!r} is not a whole number ({hint or 'an integer'})"
    text = message[0].lower() + message[1:] if message else kind
    return f"{field}: {text}{f' ({hint})' if hint else ''}"


def _where(loc: list) -> str:
    """participants[2].email: positions count from 1, as people count list items."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        elif part in ("int", "str"):  # the branch of `int | str` pydantic tried
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "file"


def _allowed_fields(loc: list, model) -> list[str]:
    person_fields = ("username", "email", "first_name", "last_name")
    return list(person_fields) if any(isinstance(p, int) for p in loc) else list(model.model_fields)


# --- commands ---------------------------------------------------------------------------------------


def template_create(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Template
    from openvle.events import DEFAULT_PORTS, create_template

    TemplateSpec, _ = _models()
    shown, data = load_yaml(args.file)
    spec = validate(TemplateSpec, data, shown)
    check_database()
    with session_scope() as session:
        existed = session.execute(select(Template.id).where(Template.name == spec.name)).scalar() is not None
    template_id = create_template(**spec.model_dump())
    print(template_id, flush=True)
    port = spec.port or DEFAULT_PORTS[spec.protocol]
    course = f", Moodle course {spec.moodle_course_id}" if spec.moodle_course_id else ""
    note(f"{'updated' if existed else 'created'} template {template_id} {spec.name!r}: VM {spec.pve_vmid} on "
         f"{spec.node}, {spec.clone_mode} clones, {spec.protocol}:{port}{course}")
    return EXIT_OK


def event_create(args: argparse.Namespace) -> int:
    from openvle.events import create_event

    _, EventSpec = _models()
    shown, data = load_yaml(args.file)
    spec = validate(EventSpec, data, shown)
    check_database()
    template_id = _template_id(spec.template, shown)
    from openvle.events import EventError

    try:
        event_id = create_event(
            spec.name, template_id, spec.utc("start"), spec.utc("end"),
            participants_=[p.model_dump() for p in spec.participants],
            teachers=[t.model_dump() for t in spec.teachers], description=spec.description, status=spec.status,
            suspend_at=spec.utc("suspend_at"), resume_at=spec.utc("resume_at"), deploy_mode=spec.deploy_mode)
    except EventError as exc:
        raise CliError(f"{shown}: {exc}") from None
    print(event_id, flush=True)
    from openvle.accounts.identity import cli_actor
    from openvle.service.events import invite_members

    invited = invite_members(event_id, cli_actor(_whoami()))
    if invited:
        note(f"{len(invited)} new account(s) get an email to choose a password: {', '.join(invited[:5])}"
             f"{' …' if len(invited) > 5 else ''}")
    people = f"{len(spec.participants)} participant(s), {len(spec.teachers)} teacher(s)"
    note(f"created event {event_id} {spec.name!r} ({spec.status}, {people}, "
         f"{_when(spec.utc('start'))} to {_when(spec.utc('end'))}); deploy it with `openvle event deploy "
         f"{event_id} --wait`")
    return EXIT_OK


def _template_id(template: int | str, shown: str) -> int:
    from openvle.errors import Invalid
    from openvle.service.templates import resolve

    try:
        return resolve(template)
    except Invalid as exc:
        raise CliError(f"{shown}: {exc}") from None


def event_list(args: argparse.Namespace) -> int:
    from sqlalchemy import and_, func, select

    from openvle.db.engine import session_scope
    from openvle.db.models import Event, Participant, Role

    check_database()
    with session_scope() as session:
        rows = session.execute(
            select(Event.id, Event.name, Event.status, Event.start_at, Event.end_at, func.count(Participant.id))
            .outerjoin(Participant, and_(Participant.event_id == Event.id, Participant.role == Role.PARTICIPANT,
                                         Participant.removed_at.is_(None)))
            .group_by(Event.id).order_by(Event.id)
        ).all()
    if not rows:
        print("no events yet: create one with `openvle event create -f event.yaml`")
        return EXIT_OK
    table = [[str(r[0]), _clip(r[1], 40), r[2], _when(r[3]), _when(r[4]), str(r[5])] for r in rows]
    for line in render_table(["ID", "NAME", "STATUS", "START (UTC)", "END (UTC)", "PARTICIPANTS"], table,
                             right=(0, 5)):
        print(line)
    return EXIT_OK


def event_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from openvle import capacity, spread
    from openvle.db.engine import session_scope
    from openvle.db.models import EventStatus, Participant, Role, Template, User
    from openvle.events import progress

    check_database()
    with session_scope() as session:
        event = _event(session, args.id)
        template = session.get(Template, event.template_id)
        capacity_fit = (capacity.assess(session, event)
                        if event.status in (EventStatus.DRAFT, EventStatus.SCHEDULED) else None)
        batches = spread.batches(session, event.id)
        plan = spread.describe(session, event, batches)
        people = session.execute(
            select(User.username, User.email, Participant.role, Participant.removed_at)
            .join(User, User.id == Participant.user_id).where(Participant.event_id == event.id)
            .order_by(Participant.id)
        ).all()
    shown = progress(args.id)
    participants = [p for p in people if p.role == Role.PARTICIPANT and p.removed_at is None]
    teachers = [p.username for p in people if p.role == Role.TEACHER and p.removed_at is None]
    print(f"event {event.id}: {event.name}")
    fields = [
        ("status", _status(event.status)),
        ("reason", event.status_reason or "-"),
        ("template", f"{template.name} (VM {template.pve_vmid} on {template.node}, {template.clone_mode} clones, "
                     f"{template.protocol}:{template.port})"),
        ("start", f"{_when(event.start_at)} UTC"),
        ("end", f"{_when(event.end_at)} UTC"),
        ("people", f"{len(participants)} participant(s); teachers: {', '.join(teachers) or 'none'}"),
    ]
    if event.description:
        fields.insert(1, ("description", _clip(" ".join(event.description.split()), 100)))
    if event.moodle_course_url:
        fields.append(("course", event.moodle_course_url))
    if capacity_fit is not None:
        fields.append(("capacity", capacity_fit.summary))
    fields.append(("deploy mode", "ready by its start (spread deploy)" if event.deploy_mode == "ready_by_start"
                   else "daily lifecycle"))
    if plan:
        fields.append(("deploy plan", plan))
    for batch in batches:
        over = ", over capacity" if batch.over_capacity else ""
        task = f", task {batch.task_id}" if batch.task_id else ""
        fields.append((f"batch {batch.number}", f"{_when(batch.run_at)} UTC: {batch.size} participant(s), "
                                                f"{spread.state(batch)}{over}{task}"))
    if event.suspend_at:
        fields.append(("break", f"suspended from {_when(event.suspend_at)} UTC"
                                + (f", resumed from {_when(event.resume_at)} UTC" if event.resume_at else "")))
    if shown["operation"]:
        verb = shown["operation"].split(".")[1]
        state = "in flight" if shown["in_flight"] else "settled"
        fields.append(("last run", f"{verb}, {state}: {shown['settled']} of {shown['steps']} steps settled "
                                   f"({shown['percent']}%)"))
    for label, value in fields:
        print(f"  {label:<13}{value}")
    steps = shown["participants"]
    event_steps = steps.get("event", {})
    # The table is the participants'; a teacher's own steps (their Guacamole login) are no column.
    stages_seen = {stage for who, stages in steps.items() if who != "event" and who not in teachers
                   for stage in stages}
    columns = [s for s in PARTICIPANT_STAGES if s in stages_seen]
    names = [p.username for p in participants]
    names += [who for who in steps if who != "event" and who not in names and who not in teachers]
    if names:
        print()
        rows = []
        for username in names:
            label = username if username in {p.username for p in participants} else f"{username} (removed)"
            rows.append([label] + [steps.get(username, {}).get(stage, "-") for stage in columns])
        for line in render_table(["PARTICIPANT"] + [c.upper() for c in columns], rows):
            print(f"  {line}")
    whole = [f"{stage} {event_steps[stage]}" for stage in EVENT_STAGES if stage in event_steps]
    if whole:
        print(f"\n  course steps: {', '.join(whole)}")
    if not steps:
        print(f"\n  nothing deployed yet: `openvle event deploy {event.id} --wait`")
    return EXIT_OK


def event_deploy_mode(args: argparse.Namespace) -> int:
    """As an admin would through the API (the CLI runs where the database is); audited."""
    from openvle import auditlog
    from openvle.accounts.identity import cli_actor
    from openvle.errors import Conflict, Invalid, NotFound
    from openvle.service.events import update_event
    from openvle.specs import EventPatch

    check_database()
    actor = cli_actor(_whoami())
    where = f"openvle event deploy-mode {args.id} {args.mode}"
    try:
        view = update_event(actor, args.id, EventPatch(deploy_mode=args.mode))
    except (Conflict, Invalid, NotFound) as exc:
        auditlog.record(actor=actor, address="cli", method="CLI", path=where, action="cli.event.deploy_mode",
                        outcome=409, object_type="event", object_id=args.id, detail=str(exc)[:1000])
        raise CliError(f"event {args.id}: {exc}") from None
    auditlog.record(actor=actor, address="cli", method="CLI", path=where, action="cli.event.deploy_mode",
                    outcome=200, object_type="event", object_id=args.id, detail=f"deploy_mode {args.mode}")
    print(f"event {args.id}: deploy mode {args.mode}" + (f"; {view.deploy_plan}" if view.deploy_plan else ""))
    return EXIT_OK


def _event(session, event_id: int):
    from openvle.db.models import Event
    from openvle.events import EventError

    event = session.get(Event, event_id)
    if event is None:
        raise EventError(f"event {event_id} does not exist")
    return event


def event_deploy(args: argparse.Namespace) -> int:
    from openvle.events import request_deploy

    override = bool(getattr(args, "override_capacity", False))
    return _request(args, lambda event_id, requested_by: request_deploy(
        event_id, requested_by=requested_by, override_capacity=override), "deploy",
        detail="capacity check overridden" if override else None)


def event_archive(args: argparse.Namespace) -> int:
    from openvle.events import request_archive

    return _request(args, request_archive, "archive")


def event_suspend(args: argparse.Namespace) -> int:
    from openvle.events import request_suspend

    return _request(args, request_suspend, "suspend")


def event_resume(args: argparse.Namespace) -> int:
    from openvle.events import request_resume

    return _request(args, request_resume, "resume")


def event_retry(args: argparse.Namespace) -> int:
    from openvle.db.engine import session_scope
    from openvle.db.models import EventStatus
    from openvle.events import request_archive, request_deploy, request_resume, request_suspend

    check_database()
    with session_scope() as session:
        event = _event(session, args.id)
        status, reason = event.status, event.status_reason
    if status in (EventStatus.DEPLOYED_WITH_FAILURES, EventStatus.DEPLOYING):
        return _request(args, request_deploy, "deploy")
    if status in (EventStatus.FAILED, EventStatus.ARCHIVING):
        return _request(args, request_archive, "archive")
    if status == EventStatus.SUSPENDING or (status == EventStatus.SUSPENDED and reason):
        return _request(args, request_suspend, "suspend")
    if status == EventStatus.RESUMING:
        return _request(args, request_resume, "resume")
    raise CliError(f"event {args.id} is {_status(status)}: nothing failed, so nothing to retry "
                   f"(`openvle event deploy {args.id}` or `openvle event archive {args.id}` start a run)")


def _request(args: argparse.Namespace, request, verb: str, detail: str | None = None) -> int:
    check_database()
    try:
        asked = request(args.id, requested_by=f"cli:{_whoami()}")
    except Exception as exc:
        _audit(verb, args.id, exc)
        raise
    _audit(verb, args.id, detail=detail)
    if asked.created:
        print(f"event {args.id}: {verb} requested, task {asked.task_id}", flush=True)
    else:
        print(f"event {args.id}: a {verb} is already in flight, task {asked.task_id}", flush=True)
    if not args.wait:
        print(f"follow it with `openvle event show {args.id}` (or add --wait)", flush=True)
        return EXIT_OK
    final = watch(args.id, timeout=args.timeout)
    return report(final, f"event.{verb}")


def vm_fresh_start(args: argparse.Namespace) -> int:
    """As an admin would ask through the API (the CLI runs where the database is: it acts as admin)."""
    from openvle import auditlog
    from openvle.accounts.identity import cli_actor
    from openvle.errors import RequestError
    from openvle.service.fresh_starts import fresh_start

    check_database()
    actor = cli_actor(_whoami())
    where = dict(address="cli", method="CLI", path=f"openvle vm fresh-start {args.id}", action="cli.vm.fresh_start",
                 object_type="vm", object_id=args.id)
    try:
        asked = fresh_start(actor, args.id)
    except RequestError as exc:
        auditlog.record(actor=actor, outcome=exc.status, detail=str(exc)[:1000], **where)
        raise
    auditlog.record(actor=actor, outcome=202, detail=f"task {asked.task.id}", **where)
    task_id = asked.task.id
    print(f"VM {args.id}: fresh start {'requested' if asked.created else 'already in flight'}, task {task_id}",
          flush=True)
    if not args.wait:
        print(f"follow it with `GET /api/tasks/{task_id}` (or add --wait)", flush=True)
        return EXIT_OK
    return _wait_for_task(task_id, args.timeout)


def _wait_for_task(task_id: int, timeout: float | None) -> int:
    from openvle.db.engine import session_scope
    from openvle.db.models import Task, TaskStatus

    started = time.monotonic()
    last = None
    while True:
        with session_scope() as session:
            task = session.get(Task, task_id)
            status, progress_, message, error, result = (task.status, task.progress, task.message, task.error,
                                                         task.result)
        line = f"{status} {progress_}%{': ' + message if message else ''}"
        if line != last:
            print(f"[{_clock(time.monotonic() - started)}] {line}", flush=True)
            last = line
        if status in TaskStatus.FINAL:
            if status == TaskStatus.SUCCESS:
                print(f"done: VM record {result.get('new_vm')} replaces VM record {result.get('old_vm')}", flush=True)
                return EXIT_OK
            fail(f"the fresh start ended {status}: {error or 'no error recorded'}")
            return EXIT_FAILED
        if timeout is not None and time.monotonic() - started >= timeout:
            fail(f"still {status} after {timeout:.0f}s; it goes on: `GET /api/tasks/{task_id}`")
            return EXIT_FAILED
        time.sleep(1)


def _audit(verb: str, event_id: int, refused: Exception | None = None, detail: str | None = None) -> None:
    """The audit log has who asked from the command line, as it has the API's requests."""
    from openvle import auditlog
    from openvle.accounts.identity import cli_actor
    from openvle.events import EventError

    if refused is not None and not isinstance(refused, EventError):
        return  # a store that failed: nothing was asked
    auditlog.record(actor=cli_actor(_whoami()), address="cli", method="CLI", path=f"openvle event {verb} {event_id}",
                    action=f"cli.event.{verb}", outcome=409 if refused else 200, object_type="event",
                    object_id=event_id, detail=str(refused)[:1000] if refused else detail)


def _whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


# --- following a deploy or archive ------------------------------------------------------------------


def busy(event_id: int, shown: dict) -> bool:
    """A deploy or archive of the event is still in flight (ours, or one that got there first)."""
    if shown["in_flight"]:
        return True
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Event, Task, TaskStatus

    with session_scope() as session:
        status = session.execute(select(Task.status).join(Event, Event.active_task_id == Task.id)
                                 .where(Event.id == event_id)).scalar()
    return status in TaskStatus.ACTIVE


def watch(event_id: int, timeout: float | None = None, out: TextIO | None = None, interval: float = 1.0) -> dict:
    """Redraw the event's progress about once a second until it settles; returns the last progress."""
    from openvle.events import progress

    out = out or sys.stdout
    view: _View = _LiveView(out) if out.isatty() and os.environ.get("TERM") != "dumb" else _PlainView(out)
    started = time.monotonic()
    next_worker_check = started + 5
    no_workers = False
    shown: dict = {"operation": None}
    try:
        while True:
            shown = progress(event_id)
            settled = not busy(event_id, shown)
            elapsed = time.monotonic() - started
            if not settled and shown["steps"] == 0 and time.monotonic() >= next_worker_check:
                next_worker_check = time.monotonic() + 10
                no_workers = not _workers_listening()
            hint = None
            if no_workers and not settled and shown["steps"] == 0:
                hint = "no worker listens on core_periodic: start `make dev` or `openvle run worker`"
            view.draw(shown, elapsed, settled, hint)
            if settled:
                return shown
            if timeout is not None and elapsed >= timeout:
                raise _Timeout(shown, elapsed)
            time.sleep(interval)
    except KeyboardInterrupt:
        view.close()
        verb = (shown["operation"] or "event.run").split(".")[1]
        fail(f"stopped watching; the {verb} of event {event_id} goes on: `openvle event show {event_id}`")
        raise
    finally:
        view.close()


class _Timeout(CliError):
    code = EXIT_FAILED

    def __init__(self, shown: dict, elapsed: float):
        verb = (shown["operation"] or "event.run").split(".")[1]
        super().__init__(f"event {shown['event_id']} is still {_status(shown['status'])} after {elapsed:.0f}s "
                         f"({shown['percent']}%); the {verb} goes on: `openvle event show {shown['event_id']}`")


def _workers_listening() -> bool:
    from rq import Worker

    from openvle.connections import get_redis

    try:
        return any("core_periodic" in w.queue_names() for w in Worker.all(connection=get_redis()))
    except Exception:
        return True  # cannot tell: say nothing


def report(shown: dict, operation: str) -> int:
    wanted = SETTLED_OK.get(shown["operation"] or operation, SETTLED_OK[operation])
    print(f"event {shown['event_id']} ({shown['name']}): {_status(shown['status'])}", flush=True)
    if shown["reason"]:
        print(f"  reason: {shown['reason']}", flush=True)
    return EXIT_OK if shown["status"] == wanted else EXIT_FAILED


def stage_rows(shown: dict) -> list[tuple[str, dict[str, int]]]:
    """The stages of the run in flight (deploy or archive), in order, with their state counts."""
    if not shown["steps"]:
        return []
    order = RUN_STAGES.get(shown["operation"], DEPLOY_STAGES)
    return [(stage, shown["stages"][stage]) for stage in order if stage in shown["stages"]]


STATE_ORDER = ("done", "failed", "cancelled", "running", "queued")


def _counts_text(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    extra = [f"{counts[s]} {s}" for s in STATE_ORDER[1:] if counts.get(s)]
    return f"{counts.get('done', 0)}/{total}" + (f" ({', '.join(extra)})" if extra else "")


class _View:
    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PlainView(_View):
    """Logs and CI: one line when something changed (at most once a second) and every 15 s anyway."""

    HEARTBEAT = 15.0

    def __init__(self, out: TextIO):
        self.out = out
        self.last = ""
        self.last_at = -1e9

    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        rows = stage_rows(shown)
        verb = (shown["operation"] or "event.deploy").split(".")[1]
        if rows:
            body = f"{verb} {shown['percent']:>3}% | " + " | ".join(f"{s} {_counts_text(c)}" for s, c in rows)
        else:
            body = f"{verb}: waiting for a worker to plan the steps"
        if hint:
            body += f" | {hint}"
        if body != self.last or elapsed - self.last_at >= self.HEARTBEAT or settled:
            if settled and body == self.last:
                return
            self.out.write(f"[{_clock(elapsed)}] {body}\n")
            self.out.flush()
            self.last, self.last_at = body, elapsed


class _LiveView(_View):
    """A terminal: one bar per stage and the overall percent, redrawn in place (ANSI cursor moves)."""

    WIDTH = 30
    COLORS = {"done": "32", "failed": "31", "cancelled": "35", "running": "33", "queued": "90"}

    def __init__(self, out: TextIO):
        self.out = out
        self.lines = 0
        self.closed = False
        self.color = not os.environ.get("NO_COLOR")  # no-color.org: set and not empty
        utf8 = "utf" in (getattr(out, "encoding", "") or "").lower()
        self.chars = dict(zip(STATE_ORDER, "█!x▒·" if utf8 else "#!x>.", strict=True))
        self.out.write("\x1b[?25l")  # hide the cursor while redrawing

    def _paint(self, state: str, text: str) -> str:
        return f"\x1b[{self.COLORS[state]}m{text}\x1b[0m" if self.color and text else text

    def bar(self, counts: dict[str, int]) -> str:
        total = sum(counts.values()) or 1
        cells, used, running_total = [], 0, 0
        for state in STATE_ORDER:
            running_total += counts.get(state, 0)
            upto = int(running_total * self.WIDTH / total + 0.5)
            cells.append(self._paint(state, self.chars[state] * (upto - used)))
            used = upto
        return "".join(cells)

    def draw(self, shown: dict, elapsed: float, settled: bool, hint: str | None) -> None:
        verb = (shown["operation"] or "event.deploy").split(".")[1]
        head = f"{verb.title()} of {shown['name']} (event {shown['event_id']})"
        overall = f"{shown['percent']:>3}%  {shown['settled']}/{shown['steps']} steps  {_clock(elapsed)}"
        lines = [f"{head}  {overall}"]
        rows = stage_rows(shown)
        for stage, counts in rows:
            lines.append(f"  {stage:<8}{self.bar(counts)}  {_counts_text(counts)}")
        if not rows:
            lines.append("  waiting for a worker to plan the steps…" if "█" in self.chars.values()
                         else "  waiting for a worker to plan the steps...")
        if hint:
            lines.append(f"  {hint}")
        up = f"\x1b[{self.lines}F" if self.lines else ""
        self.out.write(up + "\x1b[J" + "".join(f"{line}\n" for line in lines))
        self.out.flush()
        self.lines = len(lines)

    def close(self) -> None:
        if not self.closed and not self.out.closed:
            self.out.write("\x1b[?25h")  # the cursor back
            self.out.flush()
        self.closed = True


# --- formatting -------------------------------------------------------------------------------------


def render_table(headers: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers)] + [line(row) for row in rows]


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _status(status: str) -> str:
    return status.replace("_", " ")
