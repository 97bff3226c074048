"""JSON shapes of the REST API (APIConnection, APIConnectionGroup, APISharingProfile, APIUser,
APIPermissionSet). Jackson leaves out null fields of these classes, so absent values are absent keys."""

from __future__ import annotations

from typing import Any

from . import permissions
from .model import (
    CONNECTION_ATTRIBUTES,
    GROUP_ATTRIBUTES,
    OBJECT_PERMISSIONS,
    PERMISSION_KINDS,
    ROOT,
    SHARING_PROFILE_ATTRIBUTES,
    SYSTEM_PERMISSIONS,
    USER_ATTRIBUTES,
    Catalogue,
    Connection,
    ConnectionGroup,
    Permissions,
    SharingProfile,
    User,
    id_order,
)


def _attributes(schema: dict[str, str], stored: dict[str, str | None]) -> dict[str, str | None]:
    # every declared attribute is present, unset ones as null
    return {name: stored.get(name) for name in schema}


def connection_json(c: Connection) -> dict[str, Any]:
    return {"name": c.name, "identifier": c.identifier, "parentIdentifier": c.parent, "protocol": c.protocol,
            "attributes": _attributes(CONNECTION_ATTRIBUTES, c.attributes), "activeConnections": 0}


def group_json(g: ConnectionGroup) -> dict[str, Any]:
    return {"name": g.name, "identifier": g.identifier, "parentIdentifier": g.parent, "type": g.type,
            "activeConnections": 0, "attributes": _attributes(GROUP_ATTRIBUTES, g.attributes)}


def root_json() -> dict[str, Any]:
    # RootConnectionGroup: no parent, no attributes
    return {"name": ROOT, "identifier": ROOT, "type": "ORGANIZATIONAL", "activeConnections": 0, "attributes": {}}


def profile_json(p: SharingProfile) -> dict[str, Any]:
    return {"name": p.name, "identifier": p.identifier, "primaryConnectionIdentifier": p.primary,
            "attributes": _attributes(SHARING_PROFILE_ATTRIBUTES, p.attributes)}


def user_json(u: User) -> dict[str, Any]:
    out: dict[str, Any] = {"username": u.username, "attributes": _attributes(USER_ATTRIBUTES, u.attributes)}
    if u.last_active is not None:
        out["lastActive"] = u.last_active
    return out


def permission_set(p: Permissions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in PERMISSION_KINDS:
        out[kind] = {ident: [t for t in OBJECT_PERMISSIONS if t in held] for ident, held in p.objects[kind].items()}
    out["systemPermissions"] = [t for t in SYSTEM_PERMISSIONS if t in p.system]
    return out


# ---- /_sandbox/state records: everything, parameters and passwords included --------------------------------------
def connection_record(c: Connection) -> dict[str, Any]:
    return {**connection_json(c), "parameters": dict(c.parameters)}


def profile_record(p: SharingProfile) -> dict[str, Any]:
    return {**profile_json(p), "parameters": dict(p.parameters)}


def user_record(u: User) -> dict[str, Any]:
    return {**user_json(u), "password": u.password}


# ---- connectionGroups/{id}/tree ----------------------------------------------------------------------------------
def tree(state: Catalogue, actor: User, group_id: str) -> dict[str, Any]:
    """The group with every readable descendant nested (ConnectionGroupTree). Child lists and a connection's
    `sharingProfiles` appear only when non-empty, as the real tree leaves them null otherwise."""
    node = root_json() if group_id == ROOT else group_json(state.groups[group_id])
    connections = [c for c in state.connections.values()
                   if c.parent == group_id and permissions.can(actor, "connectionPermissions", c.identifier, "READ")]
    if connections:
        node["childConnections"] = [_tree_connection(state, actor, c) for c in _sorted(connections)]
    groups = [g for g in state.groups.values()
              if g.parent == group_id and permissions.can(actor, "connectionGroupPermissions", g.identifier, "READ")]
    if groups:
        node["childConnectionGroups"] = [tree(state, actor, g.identifier) for g in _sorted(groups)]
    return node


def _tree_connection(state: Catalogue, actor: User, c: Connection) -> dict[str, Any]:
    out = connection_json(c)
    profiles = [p for p in state.profiles.values() if p.primary == c.identifier
                and permissions.can(actor, "sharingProfilePermissions", p.identifier, "READ")]
    if profiles:
        out["sharingProfiles"] = [profile_json(p) for p in _sorted(profiles)]
    return out


def _sorted(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda o: id_order(o.identifier))
