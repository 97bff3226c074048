"""VM templates: teachers read them (to pick one for an event), admins make, change and delete them."""

from __future__ import annotations

from sqlalchemy import func, select

from openvle import authz, lab_events
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import Event, Template, Vm
from openvle.errors import Conflict, Invalid, NotFound
from openvle.service.views import TemplateView
from openvle.specs import TemplatePatch, TemplateSpec


def resolve(ref: int | str) -> int:
    """A template's id from its id or name; Invalid naming the known ones when there is none."""
    column = Template.id if isinstance(ref, int) else Template.name
    with session_scope() as session:
        found = session.execute(select(Template.id).where(column == ref)).scalar()
        if found is None:
            names = list(session.execute(select(Template.name).order_by(Template.name).limit(10)).scalars())
    if found is None:
        known = f" (known: {', '.join(names)})" if names else " (there are none yet)"
        raise Invalid(f"template: no template {ref!r}{known}: create it first or name an existing one")
    return found


def list_templates(actor: Actor) -> list[TemplateView]:
    authz.require_teacher(actor, "see templates")
    with session_scope() as session:
        return [TemplateView.model_validate(t) for t in session.execute(select(Template).order_by(Template.name))
                .scalars()]


def get_template(actor: Actor, template_id: int) -> TemplateView:
    with session_scope() as session:
        template = session.get(Template, template_id)
        if template is None or not actor.is_teacher:  # students see no templates
            raise NotFound(f"template {template_id} does not exist")
        return TemplateView.model_validate(template)


def create_template(actor: Actor, spec: TemplateSpec) -> TemplateView:
    authz.require_admin(actor, "create templates")
    with session_scope() as session:
        if session.execute(select(Template.id).where(Template.name == spec.name)).first() is not None:
            raise Conflict(f"a template named {spec.name!r} exists: change that one (PATCH) or pick another name")
    template_id = lab_events.create_template(**spec.model_dump())
    return get_template(actor, template_id)


def update_template(actor: Actor, template_id: int, patch: TemplatePatch) -> TemplateView:
    authz.require_admin(actor, "change templates")
    changes = patch.model_dump(exclude_unset=True)
    with session_scope() as session:
        template = session.get(Template, template_id)
        if template is None:
            raise NotFound(f"template {template_id} does not exist")
        if "name" in changes and changes["name"] != template.name and session.execute(
                select(Template.id).where(Template.name == changes["name"])).first() is not None:
            raise Conflict(f"a template named {changes['name']!r} exists: pick another name")
        for field in ("name", "pve_vmid", "node", "clone_mode", "protocol"):
            if field in changes and changes[field] is None:
                raise Invalid(f"{field}: cannot be empty (leave it out to keep {getattr(template, field)!r})")
        for field in ("name", "pve_vmid", "node", "clone_mode", "protocol", "moodle_course_id"):
            if field in changes:
                setattr(template, field, changes[field])
        if "port" in changes or "protocol" in changes:  # no port given: the protocol's default
            template.port = changes.get("port") or lab_events.DEFAULT_PORTS[template.protocol]
    return get_template(actor, template_id)


def delete_template(actor: Actor, template_id: int) -> None:
    authz.require_admin(actor, "delete templates")
    with session_scope() as session:
        template = session.get(Template, template_id)
        if template is None:
            raise NotFound(f"template {template_id} does not exist")
        used_by = session.execute(select(func.count()).select_from(Event).where(Event.template_id == template_id)
                                  ).scalar_one()
        vms = session.execute(select(func.count()).select_from(Vm).where(Vm.template_id == template_id)).scalar_one()
        if used_by or vms:
            raise Conflict(f"template {template_id} is used by {used_by} event(s) and {vms} VM(s): "
                           "only an unused template can be deleted")
        session.delete(template)
