"""Who may do what (the JDBC services' checks), and PATCH users/{u}/permissions (PermissionSetResource).

A user holding the ADMINISTER system permission may do anything. Others need READ to see an object,
UPDATE/DELETE to change or remove it, a CREATE_* system permission to create, and, to grant or revoke,
UPDATE on the user being changed plus ADMINISTER on every object affected.
"""

from __future__ import annotations

from typing import Any

from .errors import bad_request, denied, internal
from .model import OBJECT_PERMISSIONS, SYSTEM_PERMISSIONS, Catalogue, User

SYSTEM_PATH = "/systemPermissions"


def is_admin(user: User) -> bool:
    return "ADMINISTER" in user.permissions.system


def can(user: User, kind: str, identifier: str, perm: str) -> bool:
    return is_admin(user) or user.permissions.has(kind, identifier, perm)


def can_create(user: User, system_perm: str) -> bool:
    return is_admin(user) or system_perm in user.permissions.system


def require(allowed: bool) -> None:
    if not allowed:
        raise denied()


def _existing(state: Catalogue, kind: str, identifier: str) -> str | None:
    """The stored identifier the permission row would reference, or None: the MySQL mapper inserts with
    INSERT IGNORE, so a grant on a missing object fails its foreign key and is silently skipped."""
    if kind == "connectionPermissions":
        return identifier if identifier in state.connections else None
    if kind == "connectionGroupPermissions":
        return identifier if identifier in state.groups else None  # ROOT has no row either
    if kind == "sharingProfilePermissions":
        return identifier if identifier in state.profiles else None
    if kind == "userPermissions":
        user = state.user(identifier)  # joined on the entity name, compared case-insensitively
        return user.username if user is not None else None
    return None  # no active connections or user groups are modelled


def patch(state: Catalogue, actor: User, target: User, patches: Any) -> None:
    """Apply a JSON Patch of add/remove operations. Every operation is parsed before any applies, so a
    rejected patch changes nothing; then, per permission type, adds apply before removes."""
    if not isinstance(patches, list) or not all(isinstance(p, dict) for p in patches):
        raise bad_request("Permission patches must be a JSON array of patch operations.")
    adds: list[tuple[str, str, str]] = []
    removes: list[tuple[str, str, str]] = []
    for op in patches:
        path, value, verb = op.get("path"), op.get("value"), op.get("op")
        if not isinstance(path, str):
            raise internal()  # path.startsWith() on null: an NPE in the real resource
        if path == SYSTEM_PATH:
            kind, identifier, allowed = "systemPermissions", "", SYSTEM_PERMISSIONS
        else:
            kind, sep, identifier = path[1:].partition("/")
            if not path.startswith("/") or kind not in target.permissions.objects or not sep:
                raise bad_request(f'Unsupported patch path: "{path}"')
            allowed = OBJECT_PERMISSIONS
        if value not in allowed:
            raise internal()  # Type.valueOf() throws IllegalArgumentException, which maps to a 500
        if verb == "add":
            adds.append((kind, identifier, value))
        elif verb == "remove":
            removes.append((kind, identifier, value))
        else:
            raise bad_request(f'Unsupported patch operation: "{verb}"')

    if not is_admin(actor):
        require(actor.permissions.has("userPermissions", target.username, "UPDATE"))
        for kind, identifier, _value in adds + removes:
            require(kind != "systemPermissions" and actor.permissions.has(kind, identifier, "ADMINISTER"))

    perms = target.permissions
    for kind, identifier, value in adds:
        if kind == "systemPermissions":
            perms.system.add(value)
        elif (stored := _existing(state, kind, identifier)) is not None:
            perms.grant(kind, stored, {value})
    for kind, identifier, value in removes:
        if kind == "systemPermissions":
            perms.system.discard(value)
        else:
            perms.revoke(kind, _existing(state, kind, identifier) or identifier, value)
