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
import time
from typing import TYPE_CHECKING

from openvle.cli_base import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    check_database,
    clip,
    clock,
    fail,
    guarded,
    note,
    quiet_logs,
    render_table,
    status_text,
    when,
)
from openvle.cli_progress import EVENT_STAGES, PARTICIPANT_STAGES, report, watch
from openvle.cli_yaml import load_yaml, models, validate

if TYPE_CHECKING:
    from openvle.settings import Settings

# --- argument parsing ----------------------------------------------------------------------------


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
    quiet_logs(settings)
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


# --- commands ------------------------------------------------------------------------------------


def template_create(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from openvle.db.engine import session_scope
    from openvle.db.models import Template
    from openvle.lab_events import DEFAULT_PORTS, create_template

    TemplateSpec, _ = models()
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
    from openvle.lab_events import create_event

    _, EventSpec = models()
    shown, data = load_yaml(args.file)
    spec = validate(EventSpec, data, shown)
    check_database()
    template_id = _template_id(spec.template, shown)
    from openvle.lab_events import EventError

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
         f"{when(spec.utc('start'))} to {when(spec.utc('end'))}); deploy it with `openvle event deploy "
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
    table = [[str(r[0]), clip(r[1], 40), r[2], when(r[3]), when(r[4]), str(r[5])] for r in rows]
    for line in render_table(["ID", "NAME", "STATUS", "START (UTC)", "END (UTC)", "PARTICIPANTS"], table,
                             right=(0, 5)):
        print(line)
    return EXIT_OK


def event_show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from openvle import capacity, spread
    from openvle.db.engine import session_scope
    from openvle.db.models import EventStatus, Participant, Role, Template, User
    from openvle.lab_events import progress

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
        ("status", status_text(event.status)),
        ("reason", event.status_reason or "-"),
        ("template", f"{template.name} (VM {template.pve_vmid} on {template.node}, {template.clone_mode} clones, "
                     f"{template.protocol}:{template.port})"),
        ("start", f"{when(event.start_at)} UTC"),
        ("end", f"{when(event.end_at)} UTC"),
        ("people", f"{len(participants)} participant(s); teachers: {', '.join(teachers) or 'none'}"),
    ]
    if event.description:
        fields.insert(1, ("description", clip(" ".join(event.description.split()), 100)))
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
        fields.append((f"batch {batch.number}", f"{when(batch.run_at)} UTC: {batch.size} participant(s), "
                                                f"{spread.state(batch)}{over}{task}"))
    if event.suspend_at:
        fields.append(("break", f"suspended from {when(event.suspend_at)} UTC"
                                + (f", resumed from {when(event.resume_at)} UTC" if event.resume_at else "")))
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
    from openvle.lab_events import EventError

    event = session.get(Event, event_id)
    if event is None:
        raise EventError(f"event {event_id} does not exist")
    return event


def event_deploy(args: argparse.Namespace) -> int:
    from openvle.lab_events import request_deploy

    override = bool(getattr(args, "override_capacity", False))
    return _request(args, lambda event_id, requested_by: request_deploy(
        event_id, requested_by=requested_by, override_capacity=override), "deploy",
        detail="capacity check overridden" if override else None)


def event_archive(args: argparse.Namespace) -> int:
    from openvle.lab_events import request_archive

    return _request(args, request_archive, "archive")


def event_suspend(args: argparse.Namespace) -> int:
    from openvle.lab_events import request_suspend

    return _request(args, request_suspend, "suspend")


def event_resume(args: argparse.Namespace) -> int:
    from openvle.lab_events import request_resume

    return _request(args, request_resume, "resume")


def event_retry(args: argparse.Namespace) -> int:
    from openvle.db.engine import session_scope
    from openvle.db.models import EventStatus
    from openvle.lab_events import request_archive, request_deploy, request_resume, request_suspend

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
    raise CliError(f"event {args.id} is {status_text(status)}: nothing failed, so nothing to retry "
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
            print(f"[{clock(time.monotonic() - started)}] {line}", flush=True)
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
    from openvle.lab_events import EventError

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
