"""Creating, changing and deleting objects, with the checks and texts of the JDBC services
(ConnectionService, ConnectionGroupService, SharingProfileService, UserService). Called with the state lock held.

Names compare as MySQL's default collation does (case-insensitive), connections and groups per parent group,
sharing profiles per primary connection. A parent or primary connection that does not exist fails the
foreign key on INSERT/UPDATE, which real Guacamole reports as a 500 "Unexpected internal error".
"""

from __future__ import annotations

from typing import Any

from .errors import bad_request, denied, internal, invalid_login, missing, password_expired, unsupported
from .model import (
    CONNECTION_ATTRIBUTES,
    GROUP_ATTRIBUTES,
    GROUP_TYPES,
    IMPLICIT_PERMISSIONS,
    PROTOCOLS,
    ROOT,
    SHARING_PROFILE_ATTRIBUTES,
    USER_ATTRIBUTES,
    Connection,
    ConnectionGroup,
    SharingProfile,
    User,
    as_text,
    fold,
    normalize,
)
from .permissions import can, can_create, require
from .state import GuacamoleState

CONN, GROUP, PROFILE, USER = ("connectionPermissions", "connectionGroupPermissions", "sharingProfilePermissions",
                              "userPermissions")


# ---- request bodies ----------------------------------------------------------------------------------------------
def _object(body: Any, creating: bool) -> dict[str, Any]:
    if body is None:
        raise bad_request("Data must be submitted when " + ("creating objects." if creating else "updating objects."))
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _text(data: dict[str, Any], key: str) -> str | None:
    try:
        return as_text(data.get(key))
    except ValueError:
        raise bad_request(f'"{key}" must be a string.') from None


def _map(data: dict[str, Any], key: str) -> dict[str, str | None]:
    raw = data.get(key)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad_request(f'"{key}" must be a JSON object.')
    try:
        return {str(k): as_text(v) for k, v in raw.items()}
    except ValueError:
        raise bad_request(f'The values of "{key}" must be strings.') from None


def _parameters(values: dict[str, str | None]) -> dict[str, str]:
    # only parameters with a value get a row in guacamole_connection_parameter
    return {k: v for k, v in values.items() if v}


def _attributes(schema: dict[str, str], values: dict[str, str | None]) -> dict[str, str | None]:
    """Every declared attribute, replaced: a missing one is stored as null."""
    return {name: normalize(kind, values.get(name)) for name, kind in schema.items()}


def _echo_attributes(schema: dict[str, str], values: dict[str, str | None]) -> dict[str, str | None]:
    """DirectoryObjectTranslator.filterAttributes: declared attributes that were submitted; others dropped."""
    return {name: values[name] for name in schema if name in values}


def _parent(data: dict[str, Any]) -> str:
    parent = _text(data, "parentIdentifier")
    return ROOT if parent is None else parent


def _parent_exists(state: GuacamoleState, parent: str) -> None:
    if parent != ROOT and parent not in state.groups:
        raise internal()


def _grant_creator(actor: User, kind: str, identifier: str) -> None:
    actor.permissions.grant(kind, identifier, IMPLICIT_PERMISSIONS)


def _forget(state: GuacamoleState, kind: str, identifier: str) -> None:
    for user in state.users.values():
        user.permissions.forget(kind, identifier)


# ---- look-ups: an object the actor may not read does not exist for it ---------------------------------------------
def connection(state: GuacamoleState, actor: User, identifier: str) -> Connection:
    found = state.connections.get(identifier)
    if found is None or not can(actor, CONN, identifier, "READ"):
        raise missing(identifier)
    return found


def group(state: GuacamoleState, actor: User, identifier: str) -> ConnectionGroup:
    found = state.groups.get(identifier)
    if found is None or not can(actor, GROUP, identifier, "READ"):
        raise missing(identifier)
    return found


def profile(state: GuacamoleState, actor: User, identifier: str) -> SharingProfile:
    found = state.profiles.get(identifier)
    if found is None or not can(actor, PROFILE, identifier, "READ"):
        raise missing(identifier)
    return found


def user(state: GuacamoleState, actor: User, username: str) -> User:
    found = state.user(username)
    if found is None or not can(actor, USER, found.username, "READ"):
        raise missing(username)
    return found


# ---- connections -------------------------------------------------------------------------------------------------
def _check_connection(state: GuacamoleState, name: str | None, parent: str, protocol: str | None,
                      exclude: str | None) -> str:
    if name is None or not name.strip():
        raise bad_request("Connection names must not be blank.")
    for c in state.connections.values():
        if c.parent == parent and fold(c.name) == fold(name) and c.identifier != exclude:
            raise bad_request(f'The connection "{name}" already exists.')
    if protocol is None:
        raise internal()  # the protocol column is NOT NULL
    if protocol not in PROTOCOLS:
        raise bad_request(f'Unsupported protocol: "{protocol}"')
    _parent_exists(state, parent)
    return name


def create_connection(state: GuacamoleState, actor: User, body: Any) -> dict[str, Any]:
    data = _object(body, creating=True)
    require(can_create(actor, "CREATE_CONNECTION"))
    parent, protocol = _parent(data), _text(data, "protocol")
    params, attrs = _map(data, "parameters"), _map(data, "attributes")
    name = _check_connection(state, _text(data, "name"), parent, protocol, exclude=None)
    identifier = state.next_id("connection")
    state.connections[identifier] = Connection(identifier, name, parent, str(protocol), _parameters(params),
                                               _attributes(CONNECTION_ATTRIBUTES, attrs))
    _grant_creator(actor, CONN, identifier)
    # DirectoryResource.createObject returns the submitted object, its identifier filled in
    echo = {k: data[k] for k in ("name", "parentIdentifier", "protocol", "parameters") if data.get(k) is not None}
    return {**echo, "identifier": identifier, "attributes": _echo_attributes(CONNECTION_ATTRIBUTES, attrs),
            "activeConnections": 0}


def update_connection(state: GuacamoleState, actor: User, identifier: str, body: Any) -> None:
    conn = connection(state, actor, identifier)
    data = _object(body, creating=False)
    require(can(actor, CONN, identifier, "UPDATE"))
    parent, protocol = _parent(data), _text(data, "protocol")
    params, attrs = _map(data, "parameters"), _map(data, "attributes")
    conn.name = _check_connection(state, _text(data, "name"), parent, protocol, exclude=identifier)
    conn.parent, conn.protocol = parent, str(protocol)
    conn.parameters = _parameters(params)  # PUT replaces: parameters left out are deleted
    conn.attributes = _attributes(CONNECTION_ATTRIBUTES, attrs)


def delete_connection(state: GuacamoleState, actor: User, identifier: str) -> None:
    connection(state, actor, identifier)
    require(can(actor, CONN, identifier, "DELETE"))
    _drop_connection(state, identifier)


def _drop_connection(state: GuacamoleState, identifier: str) -> None:
    # ON DELETE CASCADE: parameters, sharing profiles (and their permissions), permissions on the connection
    del state.connections[identifier]
    _forget(state, CONN, identifier)
    for pid in [p.identifier for p in state.profiles.values() if p.primary == identifier]:
        del state.profiles[pid]
        _forget(state, PROFILE, pid)


def connection_parameters(state: GuacamoleState, actor: User, identifier: str) -> dict[str, str]:
    conn = connection(state, actor, identifier)
    if not can(actor, CONN, identifier, "UPDATE"):
        raise denied("Permission to read connection parameters denied.")
    return dict(conn.parameters)


# ---- connection groups -------------------------------------------------------------------------------------------
def _check_group(state: GuacamoleState, data: dict[str, Any], parent: str, exclude: str | None) -> tuple[str, str]:
    name, type_ = _text(data, "name"), _text(data, "type")
    if name is None or not name.strip():
        raise bad_request("Connection group names must not be blank.")
    for g in state.groups.values():
        if g.parent == parent and fold(g.name) == fold(name) and g.identifier != exclude:
            raise bad_request(f'The connection group "{name}" already exists.')
    if type_ is None:
        raise internal()  # APIConnectionGroupWrapper switches on the type: an NPE when it is missing
    if type_ not in GROUP_TYPES:
        raise bad_request(f'Unknown connection group type: "{type_}"')
    if exclude is not None:
        ancestor = parent
        while ancestor != ROOT and ancestor in state.groups:
            if ancestor == exclude:
                raise unsupported("A connection group may not contain itself.")
            ancestor = state.groups[ancestor].parent
    _parent_exists(state, parent)
    return name, type_


def create_group(state: GuacamoleState, actor: User, body: Any) -> dict[str, Any]:
    data = _object(body, creating=True)
    require(can_create(actor, "CREATE_CONNECTION_GROUP"))
    parent, attrs = _parent(data), _map(data, "attributes")
    name, type_ = _check_group(state, data, parent, exclude=None)
    identifier = state.next_id("group")
    state.groups[identifier] = ConnectionGroup(identifier, name, parent, type_, _attributes(GROUP_ATTRIBUTES, attrs))
    _grant_creator(actor, GROUP, identifier)
    echo = {k: data[k] for k in ("name", "parentIdentifier", "type") if data.get(k) is not None}
    return {**echo, "identifier": identifier, "activeConnections": 0,
            "attributes": _echo_attributes(GROUP_ATTRIBUTES, attrs)}


def update_group(state: GuacamoleState, actor: User, identifier: str, body: Any) -> None:
    if identifier == ROOT:
        raise internal()  # the root group is no database row: the JDBC directory cannot cast it
    found = group(state, actor, identifier)
    data = _object(body, creating=False)
    require(can(actor, GROUP, identifier, "UPDATE"))
    parent, attrs = _parent(data), _map(data, "attributes")
    found.name, found.type = _check_group(state, data, parent, exclude=identifier)
    found.parent, found.attributes = parent, _attributes(GROUP_ATTRIBUTES, attrs)


def delete_group(state: GuacamoleState, actor: User, identifier: str) -> None:
    if identifier == ROOT:
        return  # DELETE ... WHERE connection_group_id = 'ROOT' matches no row
    group(state, actor, identifier)
    require(can(actor, GROUP, identifier, "DELETE"))
    _drop_group(state, identifier)


def _drop_group(state: GuacamoleState, identifier: str) -> None:
    # parent_id ... ON DELETE CASCADE, all the way down
    for child in [g.identifier for g in state.groups.values() if g.parent == identifier]:
        _drop_group(state, child)
    for conn in [c.identifier for c in state.connections.values() if c.parent == identifier]:
        _drop_connection(state, conn)
    del state.groups[identifier]
    _forget(state, GROUP, identifier)


# ---- sharing profiles --------------------------------------------------------------------------------------------
def _check_profile(state: GuacamoleState, name: str | None, primary: str | None, exclude: str | None) -> str:
    if name is None or not name.strip():
        raise bad_request("Sharing profile names must not be blank.")
    for p in state.profiles.values():
        if p.primary == primary and fold(p.name) == fold(name) and p.identifier != exclude:
            raise bad_request(f'The sharing profile "{name}" already exists.')
    if primary is None or primary not in state.connections:
        raise internal()  # primary_connection_id is NOT NULL with a foreign key
    return name


def create_profile(state: GuacamoleState, actor: User, body: Any) -> dict[str, Any]:
    data = _object(body, creating=True)
    require(can_create(actor, "CREATE_SHARING_PROFILE"))
    primary = _text(data, "primaryConnectionIdentifier")
    params, attrs = _map(data, "parameters"), _map(data, "attributes")
    name = _check_profile(state, _text(data, "name"), primary, exclude=None)
    identifier = state.next_id("profile")
    state.profiles[identifier] = SharingProfile(identifier, name, str(primary), _parameters(params),
                                                _attributes(SHARING_PROFILE_ATTRIBUTES, attrs))
    _grant_creator(actor, PROFILE, identifier)
    echo = {k: data[k] for k in ("name", "primaryConnectionIdentifier", "parameters") if data.get(k) is not None}
    return {**echo, "identifier": identifier, "attributes": _echo_attributes(SHARING_PROFILE_ATTRIBUTES, attrs)}


def update_profile(state: GuacamoleState, actor: User, identifier: str, body: Any) -> None:
    found = profile(state, actor, identifier)
    data = _object(body, creating=False)
    require(can(actor, PROFILE, identifier, "UPDATE"))
    primary = _text(data, "primaryConnectionIdentifier")
    params, attrs = _map(data, "parameters"), _map(data, "attributes")
    found.name = _check_profile(state, _text(data, "name"), primary, exclude=identifier)
    found.primary = str(primary)
    found.parameters = _parameters(params)
    found.attributes = _attributes(SHARING_PROFILE_ATTRIBUTES, attrs)


def delete_profile(state: GuacamoleState, actor: User, identifier: str) -> None:
    profile(state, actor, identifier)
    require(can(actor, PROFILE, identifier, "DELETE"))
    del state.profiles[identifier]
    _forget(state, PROFILE, identifier)


def profile_parameters(state: GuacamoleState, actor: User, identifier: str) -> dict[str, str]:
    found = profile(state, actor, identifier)
    if not can(actor, PROFILE, identifier, "UPDATE"):
        raise denied("Permission to read sharing profile parameters denied.")
    return dict(found.parameters)


# ---- users -------------------------------------------------------------------------------------------------------
def _update_user_attributes(target: User, values: dict[str, str | None]) -> None:
    # ModeledUser applies only the attributes present in the submitted map
    for name, kind in USER_ATTRIBUTES.items():
        if name in values:
            target.attributes[name] = normalize(kind, values[name])


def create_user(state: GuacamoleState, actor: User, body: Any) -> dict[str, Any]:
    data = _object(body, creating=True)
    require(can_create(actor, "CREATE_USER"))
    username, password, attrs = _text(data, "username"), _text(data, "password"), _map(data, "attributes")
    if username is None or not username.strip():
        raise bad_request("The username must not be blank.")
    if state.user(username) is not None:
        raise bad_request(f'User "{username}" already exists.')
    created = User(username, password)
    _update_user_attributes(created, attrs)
    state.users[created.key] = created
    _grant_creator(actor, USER, username)
    created.permissions.grant(USER, username, {"READ"})  # UserService: a new user may read itself
    return {"username": username, "attributes": _echo_attributes(USER_ATTRIBUTES, attrs)}


def update_user(state: GuacamoleState, actor: User, username: str, body: Any) -> None:
    target = user(state, actor, username)
    data = _object(body, creating=False)
    if data.get("username") == actor.username:
        raise denied()  # UserResource: nobody may update himself through this endpoint
    require(can(actor, USER, target.username, "UPDATE"))
    password, attrs = _text(data, "password"), _map(data, "attributes")
    if password is not None:  # null keeps the current password
        target.password = password
    _update_user_attributes(target, attrs)


def delete_user(state: GuacamoleState, actor: User, username: str) -> None:
    target = user(state, actor, username)
    require(can(actor, USER, target.username, "DELETE"))
    if target.key == actor.key:
        raise unsupported("Deleting your own user is not allowed.")
    del state.users[target.key]
    state.tokens.revoke_user(target.key)
    _forget(state, USER, target.username)


def login(state: GuacamoleState, username: str | None, password: str | None,
          new_password: str | None = None, confirm: str | None = None) -> User:
    """The JDBC provider's checks at POST /api/tokens; the user's lastActive is stamped on success."""
    found = state.user(username)
    if found is None or found.password is None or password != found.password or found.disabled:
        raise invalid_login()
    if found.expired:
        _reset_expired_password(found, password, new_password, confirm)
    found.last_active = state.now_ms()
    return found


def _reset_expired_password(found: User, password: str, new_password: str | None, confirm: str | None) -> None:
    if new_password is None or confirm is None:
        raise password_expired()
    if new_password == password:
        raise bad_request("New passwords may not be identical to the current password if password expiration "
                          "is enabled.", key="LOGIN.ERROR_PASSWORD_SAME")
    if not new_password:
        raise bad_request("Passwords may not be blank.", key="LOGIN.ERROR_PASSWORD_BLANK")
    if new_password != confirm:
        raise bad_request("New passwords do not match.", key="LOGIN.ERROR_PASSWORD_MISMATCH")
    found.password = new_password
    found.attributes["expired"] = None
