"""Tasks over HTTP: lists and one Task for whoever may see them; the operator controls for admins;
the demo Task only when the system runs for development (DEV_MODE)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from openvle import authz
from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS, Id, audit_as, audit_detail
from openvle.backend.schemas import DemoTaskIn
from openvle.db.engine import session_scope
from openvle.db.models import Task
from openvle.enqueue import enqueue_operation
from openvle.errors import Invalid
from openvle.jobs.demo import demo_operation
from openvle.queues import QUEUE_NAMES
from openvle.service import tasks
from openvle.service.tasks import ControlRequest, QueueName, StatusName, TaskFilter
from openvle.service.views import ControlResult, Page, TaskDetailView, TaskView

router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=ERRORS, dependencies=[Depends(current_actor)])
Action = Literal["cancel", "requeue", "force-fail"]


@router.get("", name="tasks.list", response_model=Page[TaskView],
            summary="Tasks the caller may see, newest first, with filters and keyset pages")
def list_tasks(status: StatusName | None = None, queue: QueueName | None = None,
               operation: str | None = Query(None, max_length=100, description="e.g. vm.clone, event.deploy"),
               event_id: int | None = Query(None, ge=1, le=2**31 - 1),
               vm_id: int | None = Query(None, ge=1, le=2**31 - 1),
               requested_by: str | None = Query(None, max_length=100, description="e.g. user:alice, scheduler"),
               created_after: dt.datetime | None = Query(None, description="ISO 8601; UTC when without a zone"),
               created_before: dt.datetime | None = None,
               before: int | None = Query(None, ge=1, le=2**31 - 1, description="next_before of the previous page"),
               limit: int = Query(50, ge=1, le=tasks.MAX_PAGE),
               actor: Actor = Depends(current_actor)) -> Page[TaskView]:
    where = TaskFilter(status=status, queue=queue, operation=operation, event_id=event_id, vm_id=vm_id,
                       requested_by=requested_by, created_after=created_after, created_before=created_before)
    return tasks.list_tasks(actor, where, before, limit)


@router.get("/{task_id}", name="tasks.get", response_model=TaskDetailView,
            summary="A Task with its attempts (SubTasks), log lines and dependencies")
def get_task(task_id: Id, actor: Actor = Depends(current_actor)) -> TaskDetailView:
    return tasks.get_task(actor, task_id)


@router.post("/actions/{action}", name="tasks.control_bulk", response_model=ControlResult,
             summary="Admins: cancel, requeue or force-fail many Tasks by ids or by filter, with a dry run")
def control_many(action: Action, body: ControlRequest, request: Request,
                 actor: Actor = Depends(current_actor)) -> ControlResult:
    result = tasks.control(actor, action, body)
    audit_as(request, "task", None, detail=f"{action}{' (dry run)' if body.dry_run else ''} of {result.count} "
                                           f"task(s), {len(result.skipped)} skipped: {result.task_ids[:50]}")
    return result


@router.post("/{task_id}/{action}", name="tasks.control", response_model=ControlResult,
             summary="Admins: cancel, requeue or force-fail one Task (dry_run=true: only say what it would do)")
def control_one(task_id: Id, action: Action, request: Request, dry_run: bool = False,
                actor: Actor = Depends(current_actor)) -> ControlResult:
    result = tasks.control(actor, action, ControlRequest(task_ids=[task_id], dry_run=dry_run), one=True)
    outcome = (result.skipped or result.done or [None])[0]
    audit_detail(request, f"{action}{' (dry run)' if dry_run else ''}: {outcome.reason if outcome else 'would act'}")
    return result


def demo_router() -> APIRouter:
    """POST /api/tasks/demo: any queue, any duration; development only, and for admins."""
    demo = APIRouter(prefix="/api/tasks", tags=["development"], responses=ERRORS)

    @demo.post("/demo", name="tasks.demo", status_code=201, response_model=TaskView,
               summary="Development only: a demo Task on a queue")
    def create_demo(body: DemoTaskIn, request: Request, actor: Actor = Depends(current_actor)) -> TaskView:
        authz.require_admin(actor, "create demo Tasks")
        if body.queue not in QUEUE_NAMES:
            raise Invalid(f"invalid request: queue {body.queue!r} does not exist; use one of {', '.join(QUEUE_NAMES)}")
        with session_scope() as session:
            found = set(session.execute(select(Task.id).where(Task.id.in_(body.depends_on))).scalars())
        missing = sorted(set(body.depends_on) - found)
        if missing:
            raise Invalid(f"invalid request: depends_on names tasks that do not exist: {missing}")
        task = enqueue_operation(demo_operation(body.queue), body.model_dump(exclude={"queue", "depends_on"},
                                                                             exclude_none=True),
                                 target="demo", requested_by=actor.requested_by, depends_on=body.depends_on)
        audit_as(request, "task", task.id)
        return TaskView.model_validate(task)

    return demo
