"""VM templates (admins): the list, a form to make one, and one template's page to change or delete
it (only an unused one). service/templates holds the rules; a refusal is said at its field and the
form keeps what was typed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts.identity import Actor
from openvle.backend.common import Id, audit_as
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.guard import admin_actor
from openvle.backend.pages.inputs import error_by_field, parse, typed
from openvle.backend.pages.render import render
from openvle.errors import RequestError
from openvle.service import templates
from openvle.specs import TemplatePatch, TemplateSpec

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FIELDS = ("name", "pve_vmid", "node", "clone_mode", "protocol", "port", "moodle_course_id")
OPTIONAL = ("port", "moodle_course_id")  # empty: the protocol's default port; no Moodle course


def _list(request: Request, actor: Actor, values: dict[str, str], errors: dict[str, str], status: int = 200):
    return render(request, "admin/templates.html", actor, status=status, title="Templates",
                  templates=templates.list_templates(actor), values=values, errors=errors)


@router.get("/templates", name="pages.templates")
def template_list(request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    return _list(request, actor, {"clone_mode": "linked", "protocol": "rdp"}, {})


@router.post("/templates", name="pages.template_create")
async def template_create(request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    values = typed(await request.form(), FIELDS)
    spec, errors = parse(TemplateSpec, values)
    if spec is not None:
        try:
            made = await run_in_threadpool(templates.create_template, actor, spec)
        except RequestError as exc:
            errors = error_by_field(exc, FIELDS, "name")
        else:
            audit_as(request, "template", made.id)
            return RedirectResponse(f"/templates/{made.id}?made=1", status_code=303)
    return await run_in_threadpool(_list, request, actor, values, errors, 422)


def _one(request: Request, actor: Actor, template_id: int, values: dict[str, str] | None = None,
         errors: dict[str, str] | None = None, status: int = 200, note: str | None = None):
    template = templates.get_template(actor, template_id)
    if values is None:
        values = {name: "" if getattr(template, name) is None else str(getattr(template, name)) for name in FIELDS}
    return render(request, "admin/template.html", actor, status=status, title=f"Template {template.name}",
                  vm_template=template, values=values, errors=errors or {}, note=note)


@router.get("/templates/{template_id}", name="pages.template")
def template_page(template_id: Id, request: Request, made: bool = False, actor: Actor = Depends(admin_actor)
                  ) -> Response:
    return _one(request, actor, template_id, note="Template made." if made else None)


@router.post("/templates/{template_id}", name="pages.template_update")
async def template_update(template_id: Id, request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    values = typed(await request.form(), FIELDS)
    patch, errors = parse(TemplatePatch, values, **{name: None for name in OPTIONAL if not values[name]})
    if patch is not None:
        try:
            await run_in_threadpool(templates.update_template, actor, template_id, patch)
        except RequestError as exc:
            if exc.status == 404:
                raise
            errors = error_by_field(exc, FIELDS, "name")
        else:
            return await run_in_threadpool(_one, request, actor, template_id, None, None, 200, "Saved.")
    return await run_in_threadpool(_one, request, actor, template_id, values, errors, 422)


@router.post("/templates/{template_id}/delete", name="pages.template_delete")
async def template_delete(template_id: Id, request: Request, actor: Actor = Depends(admin_actor)) -> Response:
    try:
        await run_in_threadpool(templates.delete_template, actor, template_id)
    except RequestError as exc:
        if exc.status == 404:
            raise
        return await run_in_threadpool(_one, request, actor, template_id, None, {"delete": str(exc)}, exc.status)
    return RedirectResponse("/templates", status_code=303)
