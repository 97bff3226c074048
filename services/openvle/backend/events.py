"""Events over HTTP: thin routes over service/events.py, which holds every rule."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS, Id, audit_as, audit_detail
from openvle.errors import Invalid
from openvle.service import events
from openvle.service.views import EventDetailView, EventView, MembersAdded, MemberView, ProgressView, TaskRequest
from openvle.specs import EventPatch, EventSpec, Member

router = APIRouter(prefix="/api/events", tags=["events"], responses=ERRORS, dependencies=[Depends(current_actor)])


@router.get("", name="events.list", response_model=list[EventView],
            summary="Events the caller teaches or takes part in (admins: all)")
def list_events(status: str | None = Query(None, max_length=32, description="e.g. scheduled, deployed"),
                actor: Actor = Depends(current_actor)) -> list[EventView]:
    return events.list_events(actor, status)


@router.post("", name="events.create", status_code=201, response_model=EventDetailView,
             summary="Teachers and admins: create an event (the same fields as the CLI's YAML)")
def create_event(spec: EventSpec, request: Request, actor: Actor = Depends(current_actor)) -> EventDetailView:
    made = events.create_event(actor, spec)
    audit_as(request, "event", made.id, detail=f"{made.name!r}, {len(made.members)} people, deploy_mode "
                                               f"{made.deploy_mode}")
    return made


@router.get("/{event_id}", name="events.get", response_model=EventDetailView, summary="One event")
def get_event(event_id: Id, actor: Actor = Depends(current_actor)) -> EventDetailView:
    return events.get_event(actor, event_id)


@router.patch("/{event_id}", name="events.update", response_model=EventDetailView,
              summary="Its teachers and admins: change an event (template and times only before a deploy)")
def update_event(event_id: Id, patch: EventPatch, request: Request,
                 actor: Actor = Depends(current_actor)) -> EventDetailView:
    changed = patch.model_dump(exclude_unset=True)
    mode = f" (deploy_mode {changed['deploy_mode']})" if changed.get("deploy_mode") else ""
    audit_detail(request, f"changed {', '.join(sorted(changed))}{mode}")
    return events.update_event(actor, event_id, patch)


@router.delete("/{event_id}", name="events.delete", status_code=204, response_class=Response,
               summary="Its teachers and admins: delete a draft")
def delete_event(event_id: Id, actor: Actor = Depends(current_actor)) -> Response:
    events.delete_event(actor, event_id)
    return Response(status_code=204)


@router.post("/{event_id}/deploy", name="events.deploy", status_code=202, response_model=TaskRequest,
             summary="Deploy (again: only what is missing); the deploy in flight if there is one. A first deploy "
                     "that does not fit the cluster is refused (409) unless an admin overrides the capacity check")
def deploy(event_id: Id, request: Request,
           override_capacity: bool = Query(False, description="admins: deploy although it does not fit the "
                                                              "cluster (recorded in the audit log)"),
           actor: Actor = Depends(current_actor)) -> TaskRequest:
    if override_capacity:
        audit_detail(request, "capacity check overridden")
    return events.deploy(actor, event_id, override_capacity=override_capacity)


@router.post("/{event_id}/archive", name="events.archive", status_code=202, response_model=TaskRequest,
             summary="Archive: access, VMs, accounts, course")
def archive(event_id: Id, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return events.archive(actor, event_id)


@router.post("/{event_id}/suspend", name="events.suspend", status_code=202, response_model=TaskRequest,
             summary="A break: stop every VM and take Guacamole access away (VMs, people, course kept); 409 unless "
                     "deployed")
def suspend(event_id: Id, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return events.suspend(actor, event_id)


@router.post("/{event_id}/resume", name="events.resume", status_code=202, response_model=TaskRequest,
             summary="End the break: start every VM, give access back (same links and passwords); 409 unless "
                     "suspended")
def resume(event_id: Id, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return events.resume(actor, event_id)


@router.post("/{event_id}/retry", name="events.retry", status_code=202, response_model=TaskRequest,
             summary="Re-run what failed (the deploy, archive, suspend or resume)")
def retry(event_id: Id, actor: Actor = Depends(current_actor)) -> TaskRequest:
    return events.retry(actor, event_id)


@router.get("/{event_id}/progress", name="events.progress", response_model=ProgressView,
            summary="Per participant and stage, and the percentage of the latest deploy or archive")
def progress(event_id: Id, actor: Actor = Depends(current_actor)) -> ProgressView:
    return events.progress(actor, event_id)


@router.get("/{event_id}/participants", name="events.members", response_model=list[MemberView],
            summary="Its teachers and admins: everyone in the event")
def list_members(event_id: Id, actor: Actor = Depends(current_actor)) -> list[MemberView]:
    return events.list_members(actor, event_id)


@router.post("/{event_id}/participants", name="events.add_member", status_code=201, response_model=MembersAdded,
             summary="Add a participant or teacher (an account is made, matched by email)")
def add_member(event_id: Id, member: Member, request: Request,
               actor: Actor = Depends(current_actor)) -> MembersAdded:
    audit_detail(request, f"added {member.username} as {member.role}")
    return events.add_members(actor, event_id, [member])


CSV_EXAMPLE = "username,email,first_name,last_name,role\nada,ada@uni.example,Ada,Lovelace,participant\n"


@router.post("/{event_id}/participants/csv", name="events.add_members_csv", status_code=201,
             response_model=MembersAdded,
             summary="Add many from CSV (text/csv; header username,email[,first_name,last_name,role])",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}}}})
async def add_members_csv(event_id: Id, request: Request, actor: Actor = Depends(current_actor)) -> MembersAdded:
    raw = await request.body()
    if len(raw) > 2_000_000:
        raise Invalid("CSV: larger than 2 MB: split the file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("CSV: not UTF-8 text: save it as UTF-8") from None
    people = events.parse_csv(text)
    audit_detail(request, f"added {len(people)} from CSV")
    return await run_in_threadpool(events.add_members, actor, event_id, people)


@router.delete("/{event_id}/participants/{user_id}", name="events.remove_member", status_code=204,
               response_class=Response, summary="Remove someone; in a deployed event their VM and access go")
def remove_member(event_id: Id, user_id: Id, actor: Actor = Depends(current_actor)) -> Response:
    events.remove_member(actor, event_id, user_id)
    return Response(status_code=204)

