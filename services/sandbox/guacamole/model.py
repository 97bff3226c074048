"""The records a Guacamole JDBC database holds, the attribute schemas the JDBC extension declares, and the
permission and protocol vocabularies."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

ROOT = "ROOT"

# guacd's protocols this simulator accepts (the JDBC extension itself stores any string: a sandbox guard)
PROTOCOLS = ("rdp", "vnc", "ssh", "telnet", "kubernetes")
GROUP_TYPES = ("ORGANIZATIONAL", "BALANCING")

# Enum declaration order: EnumSet-backed sets serialize in this order.
OBJECT_PERMISSIONS = ("READ", "UPDATE", "DELETE", "ADMINISTER")
SYSTEM_PERMISSIONS = ("CREATE_USER", "CREATE_USER_GROUP", "CREATE_CONNECTION", "CREATE_CONNECTION_GROUP",
                      "CREATE_SHARING_PROFILE", "AUDIT", "ADMINISTER")
# What the JDBC services grant the creator of an object (ModeledDirectoryObjectService.IMPLICIT_OBJECT_PERMISSIONS)
IMPLICIT_PERMISSIONS = frozenset(OBJECT_PERMISSIONS)
# guacadmin as 002-create-admin-user.sql leaves it
ADMIN_SYSTEM_PERMISSIONS = frozenset({"CREATE_CONNECTION", "CREATE_CONNECTION_GROUP", "CREATE_SHARING_PROFILE",
                                      "CREATE_USER", "CREATE_USER_GROUP", "ADMINISTER"})
ADMIN_SELF_PERMISSIONS = frozenset({"READ", "UPDATE", "ADMINISTER"})

# APIPermissionSet keys, and the PATCH path prefix of each
PERMISSION_KINDS = ("connectionPermissions", "connectionGroupPermissions", "sharingProfilePermissions",
                    "activeConnectionPermissions", "userPermissions", "userGroupPermissions")

# Attribute schemas: name -> kind. Kinds decide how a submitted value is stored (see normalize()).
CONNECTION_ATTRIBUTES = {
    "max-connections": "int", "max-connections-per-user": "int",
    "weight": "int", "failover-only": "bool",
    "guacd-hostname": "text", "guacd-port": "int", "guacd-encryption": "encryption",
}
GROUP_ATTRIBUTES = {"max-connections": "int", "max-connections-per-user": "int", "enable-session-affinity": "bool"}
SHARING_PROFILE_ATTRIBUTES: dict[str, str] = {}
USER_ATTRIBUTES = {
    "disabled": "bool", "expired": "bool",
    "access-window-start": "time", "access-window-end": "time",
    "valid-from": "date", "valid-until": "date", "timezone": "text",
    "guac-full-name": "text", "guac-email-address": "text", "guac-organization": "text",
    "guac-organizational-role": "text",
}

_TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")


def fold(name: str) -> str:
    """MySQL's default collation: case-insensitive, trailing spaces ignored. Names and usernames compare so."""
    return name.rstrip(" ").lower()


def id_order(identifier: str) -> tuple[int, int, str]:
    """Numeric identifiers in numeric order (they are AUTO_INCREMENT keys), others after them."""
    return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)


def as_text(value: Any) -> str | None:
    """Jackson's coercion of a JSON scalar into a Java String."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError("not a string")


def normalize(kind: str, value: str | None) -> str | None:
    """The value the JDBC model keeps for a submitted attribute; unparseable values become null silently."""
    if value is None or value == "":
        return None
    if kind == "bool":
        return "true" if value == "true" else None
    if kind == "int":
        try:
            return str(int(value))
        except ValueError:
            return None
    if kind == "encryption":
        return value if value in ("none", "ssl") else None
    if kind == "date":
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    if kind == "time":
        return value if _TIME_RE.match(value) else None
    return value


@dataclass
class Connection:
    identifier: str
    name: str
    parent: str  # "ROOT" or a group identifier
    protocol: str
    parameters: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str | None] = field(default_factory=dict)


@dataclass
class ConnectionGroup:
    identifier: str
    name: str
    parent: str
    type: str = "ORGANIZATIONAL"
    attributes: dict[str, str | None] = field(default_factory=dict)


@dataclass
class SharingProfile:
    identifier: str
    name: str
    primary: str  # connection identifier
    parameters: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Permissions:
    system: set[str] = field(default_factory=set)
    # kind (an APIPermissionSet key) -> object identifier -> permission types
    objects: dict[str, dict[str, set[str]]] = field(default_factory=lambda: {k: {} for k in PERMISSION_KINDS})

    def has(self, kind: str, identifier: str, perm: str) -> bool:
        return perm in self.objects[kind].get(identifier, ())

    def grant(self, kind: str, identifier: str, perms: set[str] | frozenset[str]) -> None:
        self.objects[kind].setdefault(identifier, set()).update(perms)

    def revoke(self, kind: str, identifier: str, perm: str) -> None:
        held = self.objects[kind].get(identifier)
        if held is not None:
            held.discard(perm)
            if not held:
                del self.objects[kind][identifier]

    def forget(self, kind: str, identifier: str) -> None:
        """The object is gone: its permission rows go with it (ON DELETE CASCADE)."""
        self.objects[kind].pop(identifier, None)


@dataclass
class User:
    username: str
    password: str | None
    attributes: dict[str, str | None] = field(default_factory=dict)
    last_active: int | None = None  # epoch milliseconds of the last login
    permissions: Permissions = field(default_factory=Permissions)

    @property
    def key(self) -> str:
        return fold(self.username)

    @property
    def disabled(self) -> bool:
        return self.attributes.get("disabled") == "true"

    @property
    def expired(self) -> bool:
        return self.attributes.get("expired") == "true"


@dataclass
class Faults:
    latency: float = 0.0
    error_rate: float = 0.0
    error_every: int = 0  # exact plan: every n-th request fails (sandbox/faults.py)
    drop_rate: float = 0.0
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"latency": self.latency, "error_rate": self.error_rate, "error_every": self.error_every,
                "drop_rate": self.drop_rate, "seed": self.seed}


class Catalogue(Protocol):
    """What views and permissions read of the simulator's state, so neither imports the state."""

    groups: dict[str, ConnectionGroup]
    connections: dict[str, Connection]
    profiles: dict[str, SharingProfile]

    def user(self, name: str | None) -> User | None: ...
