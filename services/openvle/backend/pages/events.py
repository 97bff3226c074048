"""Events for teachers and admins: the list with status and dates; one event's page with the stage
table, its percentage, deploy / archive / retry, participants (a form, and CSV with a preview) and
dates, and its Task history. Every read and change goes through service/events.py, where the rules
of who may see and manage what live; the page only turns form fields into its calls and its
answers into HTML. A form that fails comes back with what was typed and the error beside its field."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.backend.common import Id, audit_as, audit_detail
from openvle.backend.pages.access import PageRoute, is_htmx, page_actor
from openvle.backend.pages.forms import FormState, local, parse_utc
from openvle.backend.pages.render import html, poll_answer, polled, render
from openvle.errors import NotFound, RequestError
from openvle.service import events, fresh_starts, templates
from openvle.service.tasks import TaskFilter, tasks_of
from openvle.service.views import EventDetailView
from openvle.specs import EventPatch, EventSpec, Member
from openvle.targets import Target

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The stage table's columns: a participant's steps in a deploy, or in an archive; "course" is the
# event's Moodle course and enrolment, shared by everyone.
DEPLOY_STAGES = ("clone", "start", "access", "email", "course")
ARCHIVE_STAGES = ("access", "stop", "delete", "account", "email", "course")
SUSPEND_STAGES = ("revoke", "stop")  # access taken away, VM stopped; a resume shows the deploy's columns
STAGES = {"event.archive": ARCHIVE_STAGES, "event.suspend": SUSPEND_STAGES}
EVENT_FIELDS = ("name", "description", "template", "start", "end", "status")
MEMBER_FIELDS = ("username", "email", "first_name", "last_name", "role")
TASK_HISTORY = 30
MAX_CSV_BYTES = 2_000_000


# --- the list and a new event -------------------------------------------------------------------------


@router.get("/events", name="pages.events")
def event_list(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    authz.require_teacher(actor, "manage events")
    # Those they manage; an event a teacher only takes part in shows under My labs.
    managed = [e for e in events.list_events(actor) if e.teaches]
    return render(request, "events/index.html", actor, title="Events", events=managed)


def _new_form(request: Request, actor: Actor, form: FormState, status: int = 200) -> Response:
    return render(request, "events/new.html", actor, status=status, title="New event", form=form,
                  templates=templates.list_templates(actor))


@router.get("/events/new", name="pages.event_new_form")
def new_event_form(request: Request, actor: Actor = Depends(page_actor)) -> Response:
    authz.require_teacher(actor, "create events")
    return _new_form(request, actor, FormState(values={"status": "draft"}))


@router.post("/events/new", name="pages.event_create")
def create_event(request: Request, name: str = Form("", max_length=300), description: str = Form("", max_length=10000),
                 template: str = Form("", max_length=100), start: str = Form("", max_length=40),
                 end: str = Form("", max_length=40), status: str = Form("draft", max_length=20),
                 actor: Actor = Depends(page_actor)) -> Response:
    authz.require_teacher(actor, "create events")
    form = FormState(values={"name": name, "description": description, "template": template, "start": start,
                             "end": end, "status": status})
    starts, ends = parse_utc(start, "start", form), parse_utc(end, "end", form)
    if not template:
        form.errors["template"] = "Choose the template every participant's VM is cloned from."
    spec = None
    try:
        spec = EventSpec(name=name, description=description or None, template=template or "?", start=starts or start,
                         end=ends or end, status=status)
    except ValidationError as exc:
        form.add_validation(exc, EVENT_FIELDS)
    if spec is not None and not form.failed:
        try:
            made = events.create_event(actor, spec)
        except RequestError as exc:
            form.add_error(exc, EVENT_FIELDS)
        else:
            audit_as(request, "event", made.id, detail=f"{made.name!r}, {len(made.members)} people")
            return RedirectResponse(f"/events/{made.id}", status_code=303)
    return _new_form(request, actor, form, status=422)


# --- one event ------------------------------------------------------------------------------------------


def _live(request: Request, actor: Actor, event_id: int, event: EventDetailView | None = None):
    """The part that moves while work runs: status, percentage, the buttons, the stage table."""
    event = event or events.get_event(actor, event_id, plan=False)
    progress = events.progress(actor, event_id)
    stages = STAGES.get(progress.operation, DEPLOY_STAGES)
    course = progress.participants.get("event", {})
    rows = [(m, progress.participants.get(m.username, {})) for m in event.members if m.role == "participant"]
    return polled(request, "events/_live.html", actor, url=f"/events/{event_id}/live", box_id="live",
                  event=event, progress=progress, stages=stages, rows=rows,
                  course=course.get("enrol") or course.get("course"))


def _history(request: Request, actor: Actor, event_id: int):
    tasks = tasks_of(actor, TaskFilter(event_id=event_id), limit=TASK_HISTORY)
    names = events.participant_names(actor, event_id)
    steps = {t.id: _step(t.target, names) for t in tasks}
    return polled(request, "events/_tasks.html", actor, url=f"/events/{event_id}/tasks", box_id="tasks", every="2s",
                  tasks=tasks, event_id=event_id, steps=steps)


def _step(target: str | None, names: dict[int, str]) -> str:
    """"event:4/participant:9/clone" -> "ada: clone"; "event:4/course" -> "course"; "event:4" -> "event"."""
    parsed = Target.parse(target)
    pid = parsed.participant_id
    if pid is not None and len(parsed.parts) == 3:
        return f"{names.get(pid, f'participant:{pid}')}: {parsed.leaf}"
    return parsed.leaf if len(parsed.parts) > 1 else "event"


def _event_page(request: Request, actor: Actor, event_id: int, status: int = 200, **forms: FormState) -> Response:
    # Read once for the whole page (200 members are many rows); NotFound / Forbidden unless they may manage it.
    event = events.get_event(actor, event_id, manage="see the participants of")
    members = event.members
    live, _ = _live(request, actor, event_id, event)
    history, _ = _history(request, actor, event_id)
    blank = {"add": FormState(values={"role": "participant"}), "csv": FormState(), "dates": FormState(
        values={"start": local(event.start_at), "end": local(event.end_at)}), "pause": FormState(
        values={"suspend_at": local(event.suspend_at) if event.suspend_at else "",
                "resume_at": local(event.resume_at) if event.resume_at else ""}),
        "mode": FormState(values={"deploy_mode": event.deploy_mode})}
    return render(request, "events/event.html", actor, status=status, title=event.name, event=event,
                  members=members, live=live, history=history, editable=event.status in events.EDITABLE,
                  forms={**blank, **forms}, preview=forms.get("csv_preview"))


@router.get("/events/{event_id}", name="pages.event")
def event_page(event_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    return _event_page(request, actor, event_id)


@router.get("/events/{event_id}/live", name="pages.event_live")
def event_live(event_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    event = events.get_event(actor, event_id, manage="see the participants of", plan=False)  # the page's check
    return poll_answer(request, *_live(request, actor, event_id, event))


@router.get("/events/{event_id}/tasks", name="pages.event_tasks")
def event_tasks(event_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    return poll_answer(request, *_history(request, actor, event_id))  # its names need the page's permission


@router.post("/events/{event_id}/run/{verb}", name="pages.event_run")
def run(event_id: Id, verb: Literal["deploy", "archive", "retry", "suspend", "resume"], request: Request,
        override_capacity: bool = Form(False), actor: Actor = Depends(page_actor)) -> Response:
    """Deploy (an admin also one that does not fit: "Deploy anyway"), archive, retry what failed,
    suspend or resume: the API's own calls. htmx gets the live part back."""
    if verb == "deploy":
        if override_capacity:
            audit_detail(request, "capacity check overridden")
        events.deploy(actor, event_id, override_capacity=override_capacity)
    else:
        {"archive": events.archive, "retry": events.retry, "suspend": events.suspend,
         "resume": events.resume}[verb](actor, event_id)
    if not is_htmx(request):
        return RedirectResponse(f"/events/{event_id}", status_code=303)
    box, _ = _live(request, actor, event_id)
    return html(str(box))


@router.post("/events/{event_id}/vms/{vm_id}/fresh-start", name="pages.event_fresh_start")
def fresh_start(event_id: Id, vm_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    """A participant's VM replaced by a new copy of the template (service/fresh_starts.py)."""
    events.get_event(actor, event_id, manage="start VMs afresh in", plan=False)  # its teachers and admins
    if vm_id not in {m.vm_id for m in events.list_members(actor, event_id)}:
        raise NotFound(f"VM {vm_id} is not a VM of event {event_id}")
    fresh_starts.fresh_start(actor, vm_id)
    if not is_htmx(request):
        return RedirectResponse(f"/events/{event_id}", status_code=303)
    box, _ = _live(request, actor, event_id)
    return html(str(box))


@router.post("/events/{event_id}/dates", name="pages.event_dates")
def edit_dates(event_id: Id, request: Request, start: str = Form("", max_length=40), end: str = Form("", max_length=40),
               actor: Actor = Depends(page_actor)) -> Response:
    form = FormState(values={"start": start, "end": end})
    starts, ends = parse_utc(start, "start", form), parse_utc(end, "end", form)
    if not form.failed:
        try:
            events.update_event(actor, event_id, EventPatch(start=starts, end=ends))
        except RequestError as exc:
            form.add_error(exc, ("start", "end"))
        else:
            audit_detail(request, "changed end, start")
            return RedirectResponse(f"/events/{event_id}#dates", status_code=303)
    return _event_page(request, actor, event_id, status=422, dates=form)


@router.post("/events/{event_id}/deploy-mode", name="pages.event_deploy_mode")
def edit_deploy_mode(event_id: Id, request: Request, deploy_mode: str = Form("", max_length=20),
                     actor: Actor = Depends(page_actor)) -> Response:
    """Daily lifecycle or ready by its start (spread.py); the rules are the API's PATCH."""
    form = FormState(values={"deploy_mode": deploy_mode})
    try:
        events.update_event(actor, event_id, EventPatch(deploy_mode=deploy_mode or None))
    except ValidationError as exc:
        form.add_validation(exc, ("deploy_mode",))
    except RequestError as exc:
        form.add_error(exc, ("deploy_mode",))
    else:
        audit_detail(request, f"changed deploy_mode (deploy_mode {deploy_mode})")
        return RedirectResponse(f"/events/{event_id}#deploy-mode", status_code=303)
    return _event_page(request, actor, event_id, status=422, mode=form)


@router.post("/events/{event_id}/break", name="pages.event_break")
def edit_break(event_id: Id, request: Request, suspend_at: str = Form("", max_length=40),
               resume_at: str = Form("", max_length=40), actor: Actor = Depends(page_actor)) -> Response:
    """The event's break (both empty: none); the rules are the API's PATCH (service/events.py)."""
    form = FormState(values={"suspend_at": suspend_at, "resume_at": resume_at})
    times = {name: parse_utc(value, name, form) if value.strip() else None
             for name, value in (("suspend_at", suspend_at), ("resume_at", resume_at))}
    if not form.failed:
        try:
            events.update_event(actor, event_id, EventPatch(**times))
        except ValidationError as exc:
            form.add_validation(exc, ("suspend_at", "resume_at"))
        except RequestError as exc:
            form.add_error(exc, ("suspend_at", "resume_at"))
        else:
            audit_detail(request, "changed resume_at, suspend_at")
            return RedirectResponse(f"/events/{event_id}#break-dates", status_code=303)
    return _event_page(request, actor, event_id, status=422, pause=form)


# --- participants ---------------------------------------------------------------------------------------


@router.post("/events/{event_id}/participants", name="pages.event_add_member")
def add_member(event_id: Id, request: Request, username: str = Form("", max_length=200),
               email: str = Form("", max_length=300), first_name: str = Form("", max_length=200),
               last_name: str = Form("", max_length=200), role: str = Form("participant", max_length=20),
               actor: Actor = Depends(page_actor)) -> Response:
    form = FormState(values={"username": username, "email": email, "first_name": first_name,
                             "last_name": last_name, "role": role})
    try:
        member = Member(username=username, email=email, first_name=first_name, last_name=last_name, role=role)
    except ValidationError as exc:
        form.add_validation(exc, MEMBER_FIELDS)
    else:
        try:
            events.add_members(actor, event_id, [member])
        except RequestError as exc:
            form.add_error(exc, MEMBER_FIELDS)
        else:
            audit_detail(request, f"added {member.username} as {member.role}")
            return RedirectResponse(f"/events/{event_id}#participants", status_code=303)
    return _event_page(request, actor, event_id, status=422, add=form)


@router.post("/events/{event_id}/participants/csv", name="pages.event_add_members_csv")
async def add_members_csv(event_id: Id, request: Request, file: UploadFile | None = File(None),
                          text: str = Form("", max_length=MAX_CSV_BYTES), step: str = Form("preview", max_length=10),
                          actor: Actor = Depends(page_actor)) -> Response:
    """Two steps: `preview` shows what would change (nothing is stored); `confirm` adds them. The CSV
    travels in the form's text field between the two, so a file is read once and nothing is lost."""
    form = FormState(values={"text": text})
    if file is not None and file.filename:
        raw = await file.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            form.errors["file"] = "Larger than 2 MB: split the file."
        else:
            try:
                form.values["text"] = text = raw.decode("utf-8")
            except UnicodeDecodeError:
                form.errors["file"] = "Not UTF-8 text: save the file as CSV UTF-8."
    if not form.failed and not text.strip():
        form.errors["file"] = "Choose a CSV file, or paste its lines below."
    if form.failed:
        return await run_in_threadpool(_event_page, request, actor, event_id, 422, csv=form)
    return await run_in_threadpool(_csv_step, request, actor, event_id, form, step)


def _csv_step(request: Request, actor: Actor, event_id: int, form: FormState, step: str) -> Response:
    try:
        people = events.parse_csv(form.values["text"])
        if step != "confirm":
            preview = events.preview_members(actor, event_id, people)
            return _event_page(request, actor, event_id, csv=form, csv_preview=preview)
        events.add_members(actor, event_id, people)
    except RequestError as exc:
        form.errors["text"] = str(exc)
        return _event_page(request, actor, event_id, status=exc.status, csv=form)
    audit_detail(request, f"added {len(people)} from CSV")
    return RedirectResponse(f"/events/{event_id}#participants", status_code=303)


@router.get("/events/{event_id}/participants/{user_id}/remove", name="pages.event_remove_member_form")
def remove_member_form(event_id: Id, user_id: Id, request: Request, actor: Actor = Depends(page_actor)) -> Response:
    event = events.get_event(actor, event_id)
    member = next((m for m in events.list_members(actor, event_id) if m.user_id == user_id), None)
    if member is None:
        raise NotFound(f"user {user_id} is not in event {event_id}")
    return render(request, "events/remove.html", actor, title=f"Remove {member.username}", event=event,
                  member=member)


@router.post("/events/{event_id}/participants/{user_id}/remove", name="pages.event_remove_member")
def remove_member(event_id: Id, user_id: Id, actor: Actor = Depends(page_actor)) -> Response:
    events.remove_member(actor, event_id, user_id)
    return RedirectResponse(f"/events/{event_id}#participants", status_code=303)
