"""Browser access through Guacamole (guacamole queue): provision a participant's VM, clean it up.

Provisioning makes: the participant's Guacamole user, a connection to their VM (protocol and port
from the template), a read-only sharing profile for the teachers, and READ permissions (the
participant on their connection; each teacher on the connection and the sharing profile). Every
object is looked up by name before it is created, and a duplicate-name answer counts as "exists",
so running it twice makes each object once.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from openvle import guacamole_passwords
from openvle.clients.guacamole import DuplicateName, Guacamole, GuacNotFound, get_guacamole
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import Event, EventStatus, Participant, Template, User, Vm, VmState
from openvle.errors import PermanentError

log = logging.getLogger("openvle.jobs.access")

# Guacamole parameters per protocol beyond host and port (self-signed RDP certificates are the norm
# on lab VMs, and NLA negotiation must be left to the server).
PROTOCOL_PARAMETERS: dict[str, dict[str, str]] = {
    "rdp": {"security": "any", "ignore-cert": "true", "resize-method": "display-update"},
    "vnc": {},
    "ssh": {},
}


def sharing_profile_name(vm: Vm) -> str:
    return f"{vm.name} (teachers, read-only)"


def _ensure_user(guac: Guacamole, user: User) -> str:
    """The user's Guacamole account, with the password we keep (encrypted) for their access email."""
    password = guacamole_passwords.ensure(user.id)
    attributes = {"guac-full-name": user.full_name, "guac-email-address": user.email}
    if guac.user(user.username) is None:
        try:
            guac.create_user(user.username, password, attributes)
        except DuplicateName:  # created between our look-up and our create
            pass
    return password


def _ensure_connection(guac: Guacamole, vm: Vm, template: Template) -> str:
    parameters = {"hostname": vm.name, "port": str(template.port), **PROTOCOL_PARAMETERS.get(template.protocol, {})}
    body = {"parentIdentifier": "ROOT", "name": vm.name, "protocol": template.protocol, "parameters": parameters,
            "attributes": {"max-connections": "", "max-connections-per-user": ""}}
    existing = _find(guac.connections(), name=vm.name, parentIdentifier="ROOT")
    if existing is None:
        try:
            return guac.create_connection(body)
        except DuplicateName:
            existing = _find(guac.connections(), name=vm.name, parentIdentifier="ROOT")
            if existing is None:
                raise
    identifier = str(existing["identifier"])
    if existing.get("protocol") != template.protocol or guac.connection_parameters(identifier) != parameters:
        guac.update_connection(identifier, body)  # the VM or template changed since: make it right
    return identifier


def _ensure_sharing_profile(guac: Guacamole, connection_id: str, name: str) -> str:
    existing = _find(guac.sharing_profiles(), name=name, primaryConnectionIdentifier=connection_id)
    if existing is not None:
        return str(existing["identifier"])
    try:
        return guac.create_sharing_profile(connection_id, name)
    except DuplicateName:
        existing = _find(guac.sharing_profiles(), name=name, primaryConnectionIdentifier=connection_id)
        if existing is None:
            raise
        return str(existing["identifier"])


def _find(objects: dict[str, dict], **match: Any) -> dict | None:
    return next((o for o in objects.values() if all(str(o.get(k)) == str(v) for k, v in match.items())), None)


def _load(vm_id: int) -> tuple[Vm, Template, User | None]:
    with session_scope() as session:
        vm = session.get(Vm, vm_id)
        if vm is None:
            raise PermanentError(f"VM record {vm_id} does not exist")
        template = session.get(Template, vm.template_id)
        owner = session.get(User, vm.user_id) if vm.user_id else None
        return vm, template, owner


def provision_access(ctx: TaskContext, vm_id: int, teacher_ids: list[int] = ()) -> dict:
    vm, template, owner = _load(vm_id)
    if vm.state != VmState.READY:
        raise PermanentError(f"VM {vm.name} is {vm.state}, not ready: no access to give")
    if owner is None:
        raise PermanentError(f"VM {vm.name} has no participant to give access to")
    with session_scope() as session:
        teachers = list(session.execute(select(User).where(User.id.in_(list(teacher_ids)))).scalars())
    guac = get_guacamole()
    _ensure_user(guac, owner)
    for teacher in teachers:
        _ensure_user(guac, teacher)
    connection_id = _ensure_connection(guac, vm, template)
    profile_id = _ensure_sharing_profile(guac, connection_id, sharing_profile_name(vm))
    guac.grant_read(owner.username, connections=[connection_id])
    for teacher in teachers:
        guac.grant_read(teacher.username, connections=[connection_id], sharing_profiles=[profile_id])
    link = guac.client_link(connection_id)
    with session_scope() as session:
        session.execute(update(Vm).where(Vm.id == vm.id).values(
            guac_connection_id=connection_id, guac_sharing_profile_id=profile_id, access_link=link))
    ctx.log(f"{owner.username} can reach {vm.name} through connection {connection_id}")
    return {"connection": connection_id, "sharing_profile": profile_id, "link": link}


def move_access(ctx: TaskContext, old_vm_id: int, new_vm_id: int, teacher_ids: list[int] = ()) -> dict:
    """A fresh start: the connection of the old VM now leads to its replacement. The new VM has the
    old one's name, so provisioning finds the same connection (same id: the same access link) and
    points it at the new VM, the same account keeps its password; then the rows follow (the
    participant's VM is the new one, the old one has no access left to clean up)."""
    old, _, _ = _load(old_vm_id)
    new, _, _ = _load(new_vm_id)
    if new.replaces_id != old.id:
        raise PermanentError(f"VM record {new_vm_id} does not replace VM record {old_vm_id}")
    given = provision_access(ctx, new_vm_id, teacher_ids)
    if old.guac_connection_id not in (None, given["connection"]):
        ctx.log(f"{old.name} had connection {old.guac_connection_id}, now {given['connection']}", level="warning")
    with session_scope() as session:
        session.execute(update(Vm).where(Vm.id == old.id).values(
            guac_connection_id=None, guac_sharing_profile_id=None, access_link=None))
        if old.participant_id is not None:
            session.execute(update(Participant).where(Participant.id == old.participant_id,
                                                      Participant.vm_id.in_((old.id, new.id)))
                            .values(vm_id=new.id))
    return {**given, "from_vm": old.id, "to_vm": new.id}


def suspend_access(ctx: TaskContext, vm_id: int, teacher_ids: list[int] = ()) -> dict:
    """A break: take READ on the VM's connection (and, for teachers, its sharing profile) away. The
    connection, the sharing profile and the accounts stay, so guac.provision gives back the same
    link and the same passwords when the event resumes."""
    vm, _, owner = _load(vm_id)
    connection_id, profile_id = vm.guac_connection_id, vm.guac_sharing_profile_id
    if connection_id is None:
        return {"revoked": [], "reason": f"VM {vm.name} has no Guacamole access to take away"}
    with session_scope() as session:
        teachers = list(session.execute(select(User.username).where(User.id.in_(list(teacher_ids)))).scalars())
    guac = get_guacamole()
    revoked = []
    people = ([(owner.username, [])] if owner is not None else []) + [(t, [profile_id] if profile_id else [])
                                                                         for t in teachers]
    for username, profiles in people:
        try:
            guac.revoke_read(username, connections=[connection_id], sharing_profiles=profiles)
        except GuacNotFound:  # no account: nothing to take away
            continue
        revoked.append(username)
    ctx.log(f"access to {vm.name} (connection {connection_id}) taken away from {', '.join(revoked) or 'nobody'}")
    return {"connection": connection_id, "revoked": revoked}


def teacher_account(ctx: TaskContext, user_id: int) -> dict:
    """A teacher's Guacamole account, with the password their teacher email gives them."""
    with session_scope() as session:
        teacher = session.get(User, user_id)
        if teacher is None:
            raise PermanentError(f"user {user_id} does not exist")
        session.expunge(teacher)
    _ensure_user(get_guacamole(), teacher)
    return {"username": teacher.username}


def cleanup_vm_access(ctx: TaskContext, vm_id: int) -> dict:
    """Delete the VM's connection and sharing profile (already gone is fine)."""
    vm, _, _ = _load(vm_id)
    guac = get_guacamole()
    removed = []
    profiles = guac.sharing_profiles()
    connection = _find(guac.connections(), name=vm.name, parentIdentifier="ROOT")
    ids = {vm.guac_connection_id, str(connection["identifier"]) if connection else None} - {None}
    for identifier in ids:
        for profile in profiles.values():
            if str(profile.get("primaryConnectionIdentifier")) == identifier:
                guac.delete_sharing_profile(str(profile["identifier"]))
                removed.append(f"sharing profile {profile['identifier']}")
        if guac.delete_connection(identifier):
            removed.append(f"connection {identifier}")
    with session_scope() as session:
        session.execute(update(Vm).where(Vm.id == vm.id).values(
            guac_connection_id=None, guac_sharing_profile_id=None, access_link=None))
    return {"removed": removed}


def cleanup_user(ctx: TaskContext, user_id: int, event_id: int | None = None) -> dict:
    """Delete a user's Guacamole account unless something else still needs it: a live VM of theirs
    with access, or another event (than `event_id`) they are in that is deployed or on its way."""
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None:
            return {"deleted": False, "reason": "no such user"}
        vm = session.execute(
            select(Vm.id).where(Vm.user_id == user_id, Vm.guac_connection_id.is_not(None),
                                Vm.state.in_((VmState.PROVISIONING, VmState.READY)))
        ).first()
        other = session.execute(
            select(Event.id).join(Participant, Participant.event_id == Event.id)
            .where(Participant.user_id == user_id, Participant.removed_at.is_(None), Event.id != (event_id or 0),
                   Event.status.in_(ACTIVE_EVENT))
        ).first()
        username = user.username
    if vm is not None:
        return {"deleted": False, "reason": f"VM {vm.id} still uses it"}
    if other is not None:
        return {"deleted": False, "reason": f"event {other.id} still needs it"}
    return {"deleted": get_guacamole().delete_user(username)}


ACTIVE_EVENT = (EventStatus.DEPLOYING, EventStatus.DEPLOYED, EventStatus.DEPLOYED_WITH_FAILURES,
                EventStatus.SUSPENDING, EventStatus.SUSPENDED, EventStatus.RESUMING)  # a break keeps accounts
