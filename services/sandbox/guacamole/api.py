"""{prefix}/api: injected faults, tokens, authentication, routing and the per-object handlers.

Like Guacamole's JAX-RS tree, anything under /api/session needs a valid token before the path is even
resolved (so a bad token is 403 even on a path that does not exist); the data source comes next, then the
resource. Handlers run with the state lock held.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from . import ops, permissions, views, wire
from .errors import ApiError, bad_request, denied, internal, missing, no_route, not_found, unauthorized
from .model import ROOT, User, id_order
from .state import GuacamoleState
from .tokens import Session

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
TOKEN_HEADER = "Guacamole-Token"


@dataclass
class Request:
    method: str
    path: str  # below {prefix}/api, still percent-encoded, e.g. "/session/data/mysql/users/a%40b"
    query: dict[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None

    def form(self) -> dict[str, str]:
        if self.content_type not in ("", FORM_TYPE):
            return {}  # @FormParam reads only form-encoded bodies: a JSON login carries no credentials
        pairs = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in pairs.items()}


@dataclass
class Ctx:
    state: GuacamoleState
    actor: User
    request: Request
    args: list[str]  # the {placeholders} of the matched route, in order


Handler = Callable[[Ctx], Any]  # a payload for 200, or None for 204


# ---- handlers ----------------------------------------------------------------------------------------------------
def _readable(ctx: Ctx, table: dict[str, Any], kind: str, shape: Callable[[Any], dict]) -> dict[str, Any]:
    ids = sorted((i for i in table if permissions.can(ctx.actor, kind, i, "READ")), key=id_order)
    return {i: shape(table[i]) for i in ids}


def _users(ctx: Ctx) -> dict[str, Any]:
    users = [u for u in ctx.state.users.values() if permissions.can(ctx.actor, ops.USER, u.username, "READ")]
    return {u.username: views.user_json(u) for u in users}


def _connection_profiles(ctx: Ctx) -> dict[str, Any]:
    conn = ops.connection(ctx.state, ctx.actor, ctx.args[0])
    table = {k: p for k, p in ctx.state.profiles.items() if p.primary == conn.identifier}
    return _readable(ctx, table, ops.PROFILE, views.profile_json)


def _group(ctx: Ctx) -> dict[str, Any]:
    if ctx.args[0] == ROOT:  # ConnectionGroupDirectoryResource answers ROOT itself; it is in no directory
        return views.root_json()
    return views.group_json(ops.group(ctx.state, ctx.actor, ctx.args[0]))


def _tree(ctx: Ctx) -> dict[str, Any]:
    if ctx.args[0] != ROOT:
        ops.group(ctx.state, ctx.actor, ctx.args[0])
    return views.tree(ctx.state, ctx.actor, ctx.args[0])


def _permissions(ctx: Ctx) -> dict[str, Any]:
    return views.permission_set(ops.user(ctx.state, ctx.actor, ctx.args[0]).permissions)


def _patch_permissions(ctx: Ctx) -> None:
    target = ops.user(ctx.state, ctx.actor, ctx.args[0])
    permissions.patch(ctx.state, ctx.actor, target, ctx.request.json())


def _self_permissions(ctx: Ctx) -> dict[str, Any]:
    return views.permission_set(ctx.actor.permissions)


def _body(fn: Callable[[GuacamoleState, User, Any], Any]) -> Handler:
    return lambda c: fn(c.state, c.actor, c.request.json())


def _on_id(fn: Callable[[GuacamoleState, User, str], Any]) -> Handler:
    return lambda c: fn(c.state, c.actor, c.args[0])


def _on_id_body(fn: Callable[[GuacamoleState, User, str, Any], Any]) -> Handler:
    return lambda c: fn(c.state, c.actor, c.args[0], c.request.json())


_TABLE: list[tuple[str, str, Handler]] = [
    ("GET", "/connections", lambda c: _readable(c, c.state.connections, ops.CONN, views.connection_json)),
    ("POST", "/connections", _body(ops.create_connection)),
    ("GET", "/connections/{id}", lambda c: views.connection_json(ops.connection(c.state, c.actor, c.args[0]))),
    ("PUT", "/connections/{id}", _on_id_body(ops.update_connection)),
    ("DELETE", "/connections/{id}", _on_id(ops.delete_connection)),
    ("GET", "/connections/{id}/parameters", _on_id(ops.connection_parameters)),
    ("GET", "/connections/{id}/sharingProfiles", _connection_profiles),
    ("GET", "/connections/{id}/history", lambda c: ops.connection(c.state, c.actor, c.args[0]) and []),
    ("GET", "/sharingProfiles", lambda c: _readable(c, c.state.profiles, ops.PROFILE, views.profile_json)),
    ("POST", "/sharingProfiles", _body(ops.create_profile)),
    ("GET", "/sharingProfiles/{id}", lambda c: views.profile_json(ops.profile(c.state, c.actor, c.args[0]))),
    ("PUT", "/sharingProfiles/{id}", _on_id_body(ops.update_profile)),
    ("DELETE", "/sharingProfiles/{id}", _on_id(ops.delete_profile)),
    ("GET", "/sharingProfiles/{id}/parameters", _on_id(ops.profile_parameters)),
    ("GET", "/connectionGroups", lambda c: _readable(c, c.state.groups, ops.GROUP, views.group_json)),
    ("POST", "/connectionGroups", _body(ops.create_group)),
    ("GET", "/connectionGroups/{id}", _group),
    ("PUT", "/connectionGroups/{id}", _on_id_body(ops.update_group)),
    ("DELETE", "/connectionGroups/{id}", _on_id(ops.delete_group)),
    ("GET", "/connectionGroups/{id}/tree", _tree),
    ("GET", "/users", _users),
    ("POST", "/users", _body(ops.create_user)),
    ("GET", "/users/{id}", lambda c: views.user_json(ops.user(c.state, c.actor, c.args[0]))),
    ("PUT", "/users/{id}", _on_id_body(ops.update_user)),
    ("DELETE", "/users/{id}", _on_id(ops.delete_user)),
    ("GET", "/users/{id}/permissions", _permissions),
    ("PATCH", "/users/{id}/permissions", _patch_permissions),
    ("GET", "/users/{id}/effectivePermissions", _permissions),  # no user groups: effective = granted
    ("GET", "/users/{id}/history", lambda c: ops.user(c.state, c.actor, c.args[0]) and []),
    ("GET", "/self", lambda c: views.user_json(c.actor)),
    ("GET", "/self/permissions", _self_permissions),
    ("GET", "/self/effectivePermissions", _self_permissions),
    ("GET", "/activeConnections", lambda c: {}),  # nobody is ever connected here
]
ROUTES = [(m, tuple(s for s in p.split("/") if s), h) for m, p, h in _TABLE]


def match(method: str, segments: list[str]) -> tuple[Handler, list[str]]:
    """The handler and placeholder values; 404 when no path matches, 405 when only the method does not."""
    path_known = False
    for route_method, pattern, handler in ROUTES:
        if len(pattern) != len(segments):
            continue
        args: list[str] = []
        for want, got in zip(pattern, segments, strict=True):
            if want.startswith("{"):
                args.append(got)
            elif want != got:
                break
        else:
            if route_method == method:
                return handler, args
            path_known = True
    raise no_route(405 if path_known else 404)


def shared(method: str, segments: list[str], actor: User) -> Any:
    """The "-shared" data source: holds only connections reached through share links, so it is empty for
    a normal login and read-only."""
    if method != "GET":
        if not segments:
            raise no_route(404)
        raise denied()
    if segments in (["connectionGroups", ROOT], ["connectionGroups", ROOT, "tree"]):
        return views.root_json()
    if segments == ["self"]:
        return {"username": actor.username, "attributes": {}}
    if len(segments) == 1 and segments[0] in ("connections", "connectionGroups", "sharingProfiles", "users",
                                              "activeConnections"):
        return {}
    if len(segments) >= 2:
        raise missing(segments[1])
    raise no_route(404)


# ---- the API -----------------------------------------------------------------------------------------------------
class Api:
    def __init__(self, state: GuacamoleState):
        self.state = state

    def handle(self, request: Request) -> wire.Reply:
        decision = self.state.decide_faults()
        if decision.drop:
            return wire.Reply(0, drop=True)
        if decision.error:
            # What a database outage looks like through RESTExceptionMapper: a wrapped SQL exception.
            reply = wire.error(internal())
        else:
            reply = self._answer(request)
        reply.delay = decision.latency
        return reply

    def _answer(self, request: Request) -> wire.Reply:
        segments = [unquote(s) for s in request.path.split("/") if s]
        try:
            with self.state.lock:
                result = self._route(request, segments)
            return wire.no_content() if result is None else wire.ok(result)
        except ApiError as err:
            return wire.error(err)
        except Exception:  # a simulator bug still answers like the real mapper would
            log.exception("handler failed: %s %s", request.method, request.path)
            return wire.error(internal())

    def _route(self, request: Request, segments: list[str]) -> Any:
        method = request.method
        if segments[:1] == ["tokens"]:
            if len(segments) == 1 and method == "POST":
                return self._login(request)
            if len(segments) == 2 and method == "DELETE":
                if not self.state.tokens.revoke(segments[1]):
                    raise not_found("No such token.")
                return None
            raise no_route(405 if len(segments) <= 2 else 404)
        if segments[:1] != ["session"]:
            raise no_route(404)
        session, actor = self._authenticate(request)
        if len(segments) == 1:
            if method != "DELETE":
                raise no_route(405)
            self.state.tokens.revoke(session.token)  # logout
            return None
        if segments[1] != "data" or len(segments) < 3:
            raise no_route(404)
        data_source, rest = segments[2], segments[3:]
        if data_source == self.state.shared_data_source:
            return shared(method, rest, actor)
        if data_source != self.state.data_source:
            raise not_found(f'Session not associated with authentication provider "{data_source}".')
        handler, args = match(method, rest)
        return handler(Ctx(self.state, actor, request, args))

    def _authenticate(self, request: Request) -> tuple[Session, User]:
        token = request.headers.get(TOKEN_HEADER) or request.query.get("token")  # the header wins
        session = self.state.tokens.get(token)
        actor = self.state.users.get(session.user_key) if session is not None else None
        if session is None or actor is None:
            raise unauthorized()
        return session, actor

    def _login(self, request: Request) -> dict[str, Any]:
        form = request.form()
        existing = self.state.tokens.get(form.get("token"))
        user = self.state.users.get(existing.user_key) if existing is not None else None
        if existing is not None and user is not None:
            token = existing.token  # an existing session is re-used: same token back
        else:
            user = ops.login(self.state, form.get("username"), form.get("password"), form.get("new-password"),
                             form.get("confirm-new-password"))
            token = self.state.tokens.issue(user.key).token
        ds = self.state.data_source
        return {"authToken": token, "username": user.username, "dataSource": ds,
                "availableDataSources": [ds, self.state.shared_data_source]}
