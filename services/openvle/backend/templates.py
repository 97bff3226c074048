"""Templates over HTTP: thin routes over service/templates.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS, Id, audit_as
from openvle.service import templates
from openvle.service.views import TemplateView
from openvle.specs import TemplatePatch, TemplateSpec

router = APIRouter(prefix="/api/templates", tags=["templates"], responses=ERRORS,
                   dependencies=[Depends(current_actor)])


@router.get("", name="templates.list", response_model=list[TemplateView], summary="Teachers and admins: templates")
def list_templates(actor: Actor = Depends(current_actor)) -> list[TemplateView]:
    return templates.list_templates(actor)


@router.post("", name="templates.create", status_code=201, response_model=TemplateView,
             summary="Admins: a new template (the same fields as the CLI's YAML)")
def create_template(spec: TemplateSpec, request: Request, actor: Actor = Depends(current_actor)) -> TemplateView:
    made = templates.create_template(actor, spec)
    audit_as(request, "template", made.id, detail=made.name)
    return made


@router.get("/{template_id}", name="templates.get", response_model=TemplateView, summary="One template")
def get_template(template_id: Id, actor: Actor = Depends(current_actor)) -> TemplateView:
    return templates.get_template(actor, template_id)


@router.patch("/{template_id}", name="templates.update", response_model=TemplateView,
              summary="Admins: change a template")
def update_template(template_id: Id, patch: TemplatePatch, actor: Actor = Depends(current_actor)) -> TemplateView:
    return templates.update_template(actor, template_id, patch)


@router.delete("/{template_id}", name="templates.delete", status_code=204, response_class=Response,
               summary="Admins: delete a template no event or VM uses")
def delete_template(template_id: Id, actor: Actor = Depends(current_actor)) -> Response:
    templates.delete_template(actor, template_id)
    return Response(status_code=204)
