"""Tasks as users see them: lists with filters and keyset pages, one Task with its attempts, and the
operator controls (admins), one Task or many by filter, each with a dry run."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload

from openvle import authz, controls
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskDependency, TaskStatus
from openvle.errors import Invalid
from openvle.operations import all_operations
from openvle.queues import QUEUE_NAMES
from openvle.service.views import ControlOutcome, ControlResult, Page, TaskDetailView, TaskView

STATUSES = (TaskStatus.QUEUED, TaskStatus.PROCESSING, *TaskStatus.FINAL)
StatusName = Literal["queued", "processing", "success", "error", "cancelled"]
QueueName = Literal[QUEUE_NAMES]  # type: ignore[valid-type]
MAX_PAGE = 500
# A list reads only what it shows (not params, nor the ORM's bookkeeping): most of a page's cost is
# the driver decoding columns.
_LISTED = [Task.__table__.c[name] for name in TaskView.model_fields]
MAX_BULK = 10_000


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class TaskFilter(BaseModel):
    """Which Tasks: every field given must match (times are UTC when they carry no zone)."""

    model_config = ConfigDict(extra="forbid")

    status: StatusName | None = None
    queue: QueueName | None = None
    operation: str | None = Field(None, max_length=100, description="e.g. vm.clone, event.deploy")
    event_id: int | None = Field(None, ge=1, le=2**31 - 1)
    vm_id: int | None = Field(None, ge=1, le=2**31 - 1)
    requested_by: str | None = Field(None, max_length=100, description="e.g. user:alice, scheduler, task:12")
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None

    @field_validator("created_after", "created_before")
    @classmethod
    def _zone(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _utc(value)

    def apply(self, query: Select) -> Select:
        for name in ("status", "queue", "operation", "event_id", "vm_id", "requested_by"):
            value = getattr(self, name)
            if value is not None:
                query = query.where(getattr(Task, name) == value)
        if self.created_after is not None:
            query = query.where(Task.created_at >= self.created_after)
        if self.created_before is not None:
            query = query.where(Task.created_at < self.created_before)
        return query


def list_tasks(actor: Actor, where: TaskFilter, before: int | None = None, limit: int = 50) -> Page[TaskView]:
    """Newest first; `before` (an id) continues after a page (keyset: as fast deep as on top).

    Someone who sees only some Tasks (teachers, students) sees the union of a few kinds (their own
    requests, their VMs', their events'): each kind is read as its own indexed keyset page and the
    pages are merged, since one OR over them would make the database read the whole table."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be 1 to {MAX_PAGE}, not {limit}")
    with session_scope() as session:
        found: dict[int, object] = {}
        for branch in authz.tasks_branches(session, actor):
            query = where.apply(select(*_LISTED).where(branch))
            if before is not None:
                query = query.where(Task.id < before)
            for row in session.execute(query.order_by(Task.id.desc()).limit(limit + 1)):
                found.setdefault(row.id, row)
        rows = [found[task_id] for task_id in sorted(found, reverse=True)[:limit + 1]]
        items = [TaskView.model_validate(row._mapping) for row in rows[:limit]]
    return Page[TaskView](items=items, next_before=items[-1].id if len(rows) > limit else None)


def get_task(actor: Actor, task_id: int) -> TaskDetailView:
    with session_scope() as session:
        task = authz.task(session, actor, task_id)
        task = session.execute(select(Task).where(Task.id == task.id)
                               .options(selectinload(Task.subtasks), selectinload(Task.logs))).scalar_one()
        parents = session.execute(select(TaskDependency.depends_on_id).where(TaskDependency.task_id == task_id)
                                  ).scalars().all()
        children = session.execute(select(TaskDependency.task_id).where(TaskDependency.depends_on_id == task_id)
                                   ).scalars().all()
        return TaskDetailView.model_validate({**TaskView.model_validate(task).model_dump(), "params": task.params,
                                              "depends_on": sorted(parents), "dependents": sorted(children),
                                              "subtasks": task.subtasks, "logs": task.logs})


def tasks_by_ids(actor: Actor, task_ids: list[int]) -> list[TaskView]:
    """Those of `task_ids` the actor sees, by id (what a confirmation names before a bulk control)."""
    ids = sorted(set(task_ids))[:MAX_BULK]
    if not ids:
        return []
    with session_scope() as session:
        rows = session.execute(select(*_LISTED).where(Task.id.in_(ids), authz.tasks_clause(session, actor))
                               .order_by(Task.id)).all()
    return [TaskView.model_validate(row._mapping) for row in rows]


def operation_names() -> list[str]:
    """Every operation a Task can name (a filter's choices)."""
    return sorted(all_operations())


def tasks_of(actor: Actor, where: TaskFilter, limit: int = 20) -> list[TaskView]:
    return list_tasks(actor, where, limit=limit).items


# --- operator controls ----------------------------------------------------------------------------------


class ControlRequest(BaseModel):
    """Either `task_ids` or `filter` (the Tasks of a filter the control applies to, oldest first)."""

    model_config = ConfigDict(extra="forbid")

    task_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(None, max_length=MAX_BULK)
    filter: TaskFilter | None = None
    dry_run: bool = Field(False, description="only count and list the Tasks it would act on")
    limit: int = Field(1000, ge=1, le=MAX_BULK, description="at most this many Tasks of the filter")


def control(actor: Actor, action: str, request: ControlRequest, one: bool = False) -> ControlResult:
    """`one`: asked of one Task by its id, which does not exist for a caller who does not see it."""
    if one and request.task_ids:
        get_task(actor, request.task_ids[0])
    authz.require_admin(actor, f"{action} Tasks")
    if action not in controls.ACTIONS:
        raise Invalid(f"unknown control {action!r}: use one of {', '.join(controls.ACTIONS)}")
    if (request.task_ids is None) == (request.filter is None):
        raise Invalid("give either task_ids (a list of Task ids) or filter (status, queue, operation, …), not both")
    if request.task_ids is not None:
        ids = sorted(set(request.task_ids))
    else:
        eligible = controls.ELIGIBLE[action]
        query = request.filter.apply(select(Task.id).where(Task.status.in_(eligible)))
        with session_scope() as session:  # oldest first: a requeued parent before its dependents
            ids = list(session.execute(query.order_by(Task.id).limit(request.limit)).scalars())
    outcomes = []
    would: set[int] = set()  # a dry run of a chain: its parents are requeued first, as they would be
    for task_id in ids:
        outcome = (controls.check(action, task_id, frozenset(would)) if request.dry_run
                   else controls.apply(action, task_id, actor.requested_by))
        if outcome.done:
            would.add(task_id)
        outcomes.append(outcome)
    done = [ControlOutcome.model_validate(o, from_attributes=True) for o in outcomes if o.done]
    skipped = [ControlOutcome.model_validate(o, from_attributes=True) for o in outcomes if not o.done]
    return ControlResult(action=action, dry_run=request.dry_run, count=len(done), task_ids=[o.task_id for o in done],
                         skipped=skipped, done=[] if request.dry_run else done)
