"""The catalogue of operations: a name ("vm.clone") → its queue and where its job function lives.

A Task stores the operation name and JSON params; enqueue reads the queue here, and the work horse
imports the function by its dotted path only when it runs one (as RQ passes functions by name): the
Task runtime never imports job bodies, so jobs may use the runtime without an import loop.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openvle.errors import UnknownOperation
from openvle.queues import QUEUE_NAMES, QUEUES


@dataclass(frozen=True)
class Operation:
    name: str
    queue: str
    path: str  # "package.module:function"; the function is func(ctx: TaskContext, **params)

    @property
    def func(self) -> Callable[..., Any]:
        return _function(self.path)


@functools.cache
def _function(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_CATALOGUE: tuple[Operation, ...] = (
    Operation("guac.provision", "guacamole", "openvle.jobs.access:provision_access"),
    Operation("guac.move_access", "guacamole", "openvle.jobs.access:move_access"),
    Operation("guac.suspend_access", "guacamole", "openvle.jobs.access:suspend_access"),
    Operation("guac.teacher_account", "guacamole", "openvle.jobs.access:teacher_account"),
    Operation("guac.cleanup_vm", "guacamole", "openvle.jobs.access:cleanup_vm_access"),
    Operation("guac.cleanup_user", "guacamole", "openvle.jobs.access:cleanup_user"),
    Operation("accounts.send_link", "mails", "openvle.jobs.accounts:send_link"),
    Operation("event.suspend", "core_periodic", "openvle.jobs.breaks:suspend_event"),
    Operation("event.resume", "core_periodic", "openvle.jobs.breaks:resume_event"),
    Operation("event.mark_suspended", "core_periodic", "openvle.jobs.breaks:mark_suspended"),
    Operation("event.mark_resumed", "core_periodic", "openvle.jobs.breaks:mark_resumed"),
    Operation("moodle.deploy_course", "moodle", "openvle.jobs.courses:deploy_course"),
    Operation("moodle.enrol", "moodle", "openvle.jobs.courses:enrol"),
    Operation("moodle.archive", "moodle", "openvle.jobs.courses:archive_course"),
    Operation("event.deploy", "core_periodic", "openvle.jobs.lab_events:deploy_event"),
    Operation("event.course", "moodle", "openvle.jobs.lab_events:event_course"),
    Operation("event.enrol", "moodle", "openvle.jobs.lab_events:event_enrol"),
    Operation("event.access_email", "mails", "openvle.jobs.lab_events:access_email"),
    Operation("event.course_email", "mails", "openvle.jobs.lab_events:course_email"),
    Operation("event.teacher_email", "mails", "openvle.jobs.lab_events:teacher_email"),
    Operation("event.mark_deployed", "core_periodic", "openvle.jobs.lab_events:mark_deployed"),
    Operation("event.archive", "core_periodic", "openvle.jobs.lab_events:archive_event"),
    Operation("event.course_archive", "moodle", "openvle.jobs.lab_events:course_archive"),
    Operation("event.archive_email", "mails", "openvle.jobs.lab_events:archive_email"),
    Operation("event.mark_archived", "core_periodic", "openvle.jobs.lab_events:mark_archived"),
    Operation("vm.fresh_start", "core_periodic", "openvle.jobs.fresh_starts:fresh_start"),
    Operation("housekeeping.heartbeat", "core_periodic", "openvle.jobs.housekeeping:heartbeat"),
    Operation("housekeeping.reconcile", "core_periodic", "openvle.jobs.housekeeping:reconcile_tasks"),
    Operation("housekeeping.purge_tasks", "core_periodic", "openvle.jobs.housekeeping:purge_tasks"),
    Operation("housekeeping.purge_audit", "core_periodic", "openvle.jobs.housekeeping:purge_audit"),
    Operation("events.lifecycle", "core_periodic", "openvle.jobs.lifecycle:lifecycle"),
    Operation("events.deploy_batches", "core_periodic", "openvle.jobs.lifecycle:deploy_batches"),
    Operation("mail.send", "mails", "openvle.jobs.mail:send_email"),
    Operation("mail.cleanup", "core_periodic", "openvle.jobs.mail:cleanup_emails"),
    Operation("nodes.sync", "pve_periodic", "openvle.jobs.nodes:sync_nodes"),
    Operation("vm.clone", "pve_vm_clone", "openvle.jobs.vms:clone_vm"),
    Operation("vm.delete", "pve_vm_clone", "openvle.jobs.vms:delete_vm"),
    Operation("vm.start", "pve_vm_actions", "openvle.jobs.vms:start_vm"),
    Operation("vm.stop", "pve_vm_actions", "openvle.jobs.vms:stop_vm"),
    Operation("vm.reset", "pve_vm_actions", "openvle.jobs.vms:reset_vm"),
    Operation("vm.migrate", "pve_vm_actions", "openvle.jobs.vms:migrate_vm"),
    # One demo operation per queue, so the demo can exercise any worker role; demo.noop for the benchmark.
    *(Operation(f"demo.{queue}", queue, "openvle.jobs.demo:demo") for queue in QUEUE_NAMES),
    Operation("demo.noop", "core_periodic", "openvle.jobs.demo:noop"),
)

_registry: dict[str, Operation] = {}
for _op in _CATALOGUE:
    if _op.queue not in QUEUES:
        raise ValueError(f"operation {_op.name}: unknown queue {_op.queue!r}")
    if _op.name in _registry:
        raise ValueError(f"operation {_op.name} listed twice")
    _registry[_op.name] = _op


def get_operation(name: str) -> Operation:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownOperation(f"no operation named {name!r}; known: {', '.join(sorted(_registry))}") from None


def all_operations() -> dict[str, Operation]:
    return dict(_registry)


def load_jobs() -> None:
    """Import every operation's function now (a worker before it forks, so each work horse starts
    warm; the backend at start, so a catalogue entry naming no function stops it there)."""
    for op in _CATALOGUE:
        op.func  # noqa: B018
