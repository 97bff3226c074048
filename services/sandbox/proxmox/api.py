"""/api2/json: faults, authentication, routing, node proxying, parameter checks, handlers.

The order follows pveproxy: authenticate, find the handler (501 when none), proxy to the node named in the
path (500 when the name does not resolve, 595 when the node does not answer), then verify parameters and run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import ops, schemas, views, wire
from .auth import TokenAuth
from .errors import ApiError, fail
from .state import ClusterState
from .validation import Schema, validate

log = logging.getLogger(__name__)

PREFIX = "/api2/json"


@dataclass
class Ctx:
    state: ClusterState
    user: str  # user@realm!tokenid, as it appears in UPIDs


Handler = Callable[[Ctx, dict[str, Any]], Any]


@dataclass(frozen=True)
class Route:
    method: str
    segments: tuple[str, ...]
    schema: Schema
    handler: Handler


def _subdirs(*names: str) -> list[dict[str, str]]:
    return [{"subdir": n} for n in names]


def _vm(c: Ctx, p: dict[str, Any]):
    return views.vm_on(c.state, p["node"], p["vmid"])


def _vm_config(c: Ctx, p: dict[str, Any]) -> dict[str, Any]:
    vm = _vm(c, p)
    if p.get("snapshot"):
        raise fail(f"snapshot '{p['snapshot']}' does not exist")
    return views.vm_config(c.state, vm)


def _task_log(c: Ctx, p: dict[str, Any]) -> wire.WithAttribs:
    lines, total = views.task_log(c.state, p["node"], p["upid"], p.get("start", 0), p.get("limit", 50))
    return wire.WithAttribs(lines, {"total": total})


def _node_tasks(c: Ctx, p: dict[str, Any]) -> wire.WithAttribs:
    tasks, total = views.node_tasks(c.state, p["node"], p)
    return wire.WithAttribs(tasks, {"total": total})


def _vm_op(fn: Callable[..., str]) -> Handler:
    return lambda c, p: fn(c.state, c.user, p["node"], p["vmid"], p)


VM = "/nodes/{node}/qemu/{vmid}"
S = schemas
_TABLE: list[tuple[str, str, Schema, Handler]] = [
    ("GET", "/", S.EMPTY, lambda c, p: _subdirs("version", "cluster", "nodes", "storage", "access", "pools")),
    ("GET", "/version", S.EMPTY, lambda c, p: dict(views.VERSION)),
    ("GET", "/cluster", S.EMPTY, lambda c, p: [{"name": n} for n in ("log", "options", "resources", "tasks",
                                                                     "status", "nextid")]),
    ("GET", "/cluster/resources", S.CLUSTER_RESOURCES, lambda c, p: views.cluster_resources(c.state, p.get("type"))),
    ("GET", "/cluster/nextid", S.NEXTID, lambda c, p: views.next_id(c.state, p.get("vmid"))),
    ("GET", "/cluster/status", S.EMPTY, lambda c, p: views.cluster_status(c.state)),
    ("GET", "/nodes", S.EMPTY, lambda c, p: views.nodes_list(c.state)),
    ("GET", "/nodes/{node}", S.NODE_ONLY, lambda c, p: [{"name": n} for n in ("qemu", "status", "tasks", "rrddata")]),
    ("GET", "/nodes/{node}/status", S.NODE_ONLY, lambda c, p: views.node_status(c.state, p["node"])),
    ("GET", "/nodes/{node}/rrddata", S.RRDDATA,
     lambda c, p: views.rrddata(c.state, p["node"], p["timeframe"], p.get("cf", "AVERAGE"))),
    ("GET", "/nodes/{node}/qemu", S.QEMU_LIST, lambda c, p: views.qemu_list(c.state, p["node"], bool(p.get("full")))),
    ("GET", VM, S.VM_PATH, lambda c, p: _vm(c, p) and _subdirs("config", "status", "clone", "migrate")),
    ("DELETE", VM, S.DESTROY, _vm_op(ops.destroy)),
    ("GET", VM + "/config", S.VM_CONFIG_GET, _vm_config),
    ("PUT", VM + "/config", S.VM_CONFIG_PUT, lambda c, p: ops.update_config(c.state, p["node"], p["vmid"], p)),
    ("POST", VM + "/clone", S.CLONE, _vm_op(ops.clone)),
    ("GET", VM + "/migrate", S.MIGRATE_GET,
     lambda c, p: views.migrate_precondition(c.state, _vm(c, p), p.get("target"))),
    ("POST", VM + "/migrate", S.MIGRATE_POST, _vm_op(ops.migrate)),
    ("GET", VM + "/status", S.VM_PATH,
     lambda c, p: _vm(c, p) and _subdirs("current", "start", "stop", "reset", "shutdown", "reboot")),
    ("GET", VM + "/status/current", S.VM_PATH, lambda c, p: views.vm_status(c.state, _vm(c, p))),
    ("POST", VM + "/status/start", S.START, _vm_op(ops.start)),
    ("POST", VM + "/status/stop", S.STOP, _vm_op(ops.stop)),
    ("POST", VM + "/status/shutdown", S.SHUTDOWN, _vm_op(ops.shutdown)),
    ("POST", VM + "/status/reset", S.RESET, _vm_op(ops.reset)),
    ("POST", VM + "/status/reboot", S.REBOOT, _vm_op(ops.reboot)),
    ("GET", "/nodes/{node}/tasks", S.NODE_TASKS, lambda c, p: _node_tasks(c, p)),
    ("GET", "/nodes/{node}/tasks/{upid}", S.TASK, lambda c, p: [{"name": "log"}, {"name": "status"}]),
    ("GET", "/nodes/{node}/tasks/{upid}/status", S.TASK,
     lambda c, p: views.task_status(c.state, p["node"], p["upid"])),
    ("GET", "/nodes/{node}/tasks/{upid}/log", S.TASK_LOG, _task_log),
]
ROUTES = [Route(m, tuple(s for s in path.split("/") if s), schema, h) for m, path, schema, h in _TABLE]


def match(method: str, rel: str) -> tuple[Route, dict[str, str]] | None:
    parts = tuple(s for s in rel.split("/") if s)
    for route in ROUTES:
        if route.method != method or len(route.segments) != len(parts):
            continue
        params: dict[str, str] = {}
        for want, got in zip(route.segments, parts, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                break
        else:
            return route, params
    return None


class Api:
    def __init__(self, state: ClusterState, auth: TokenAuth):
        self.state = state
        self.auth = auth

    def handle(self, method: str, rel: str, params: dict[str, Any], headers: Mapping[str, str]) -> wire.Reply:
        decision = self.state.decide_faults(method)
        if decision.drop:
            return wire.Reply(0, "", drop=True)
        if decision.latency:
            time.sleep(decision.latency)
        try:
            if rel.rstrip("/") == "/access/ticket" and method == "POST":
                return self._ticket(params)
            reason = self.auth.check(headers)
            if reason is not None:
                return wire.Reply(401, reason, delay=self.state.config.auth_fail_delay)
            if decision.error:
                raise fail(decision.error)
            found = match(method, rel)
            if found is None:
                raise ApiError(501, f"Method '{method} {rel}' not implemented")
            route, path_params = found
            name = "{} /{}".format(method, "/".join(route.segments))
            self.state.hold_if_planned(name, rel)
            with self.state.lock:
                self.state.advance()
                self.state.served[name] += 1
                if "node" in path_params:
                    self._proxy_check(path_params["node"])
                values = validate({**params, **path_params}, route.schema)
                result = route.handler(Ctx(self.state, self.auth.tokenid), values)
            if self.state.answer_lost(method, is_clone=rel.rstrip("/").endswith("/clone")):
                return wire.Reply(0, "", drop=True)  # done, but the caller never hears of it
            return wire.ok(result)
        except ApiError as err:
            return wire.error(err)
        except Exception as exc:  # a simulator bug should still answer like a server would
            log.exception("handler failed: %s %s", method, rel)
            return wire.error(fail(f"{type(exc).__name__}: {exc}"))

    def _proxy_check(self, node: str) -> None:
        if node not in self.state.nodes:
            raise fail(f"hostname lookup '{node}' failed - failed to get address info for: {node}: "
                       "Name or service not known")
        if not self.state.node_online(node):
            # pveproxy forwards /nodes/<other>/... to that node; when it does not answer AnyEvent::HTTP reports
            # status 595 with the errno text as reason and no body (inferred from pveproxy's proxy code)
            raise ApiError(595, "Connection timed out", body=False)

    def _ticket(self, params: dict[str, Any]) -> wire.Reply:
        validate(params, schemas.TICKET)
        # only API tokens are accepted by this simulator: every login fails like a wrong password does
        return wire.Reply(401, "authentication failure", delay=self.state.config.auth_fail_delay)
