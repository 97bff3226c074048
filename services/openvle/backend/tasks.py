"""Tasks over HTTP: create a demo Task on any queue, read a Task with its attempts and log."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from openvle.backend.schemas import DemoTaskIn, TaskDetailOut, TaskOut
from openvle.db.engine import session_scope
from openvle.db.models import Task, TaskDependency, TaskStatus
from openvle.enqueue import enqueue_operation
from openvle.jobs.demo import demo_operation
from openvle.queues import QUEUE_NAMES

router = APIRouter(prefix="/api/tasks", tags=["tasks"])

STATUSES = (TaskStatus.QUEUED, TaskStatus.PROCESSING, *TaskStatus.FINAL)


@router.post("/demo", status_code=201, response_model=TaskOut, summary="Create a demo Task on a queue")
def create_demo(body: DemoTaskIn) -> TaskOut:
    if body.queue not in QUEUE_NAMES:
        raise HTTPException(422, f"invalid request: queue {body.queue!r} does not exist; use one of "
                                 f"{', '.join(QUEUE_NAMES)}")
    with session_scope() as session:
        found = set(session.execute(select(Task.id).where(Task.id.in_(body.depends_on))).scalars())
    missing = sorted(set(body.depends_on) - found)
    if missing:
        raise HTTPException(422, f"invalid request: depends_on names tasks that do not exist: {missing}")
    task = enqueue_operation(
        demo_operation(body.queue),
        body.model_dump(exclude={"queue", "depends_on"}, exclude_none=True),
        target="demo",
        requested_by="api",
        depends_on=body.depends_on,
    )
    return TaskOut.model_validate(task)


@router.get("", response_model=list[TaskOut], summary="Tasks, newest first")
def list_tasks(
    status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
    queue: str | None = Query(None, description=f"one of {', '.join(QUEUE_NAMES)}"),
    operation: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[TaskOut]:
    if status is not None and status not in STATUSES:
        raise HTTPException(422, f"invalid request: status {status!r} is not one of {', '.join(STATUSES)}")
    if queue is not None and queue not in QUEUE_NAMES:
        raise HTTPException(422, f"invalid request: queue {queue!r} is not one of {', '.join(QUEUE_NAMES)}")
    query = select(Task).order_by(Task.id.desc()).limit(limit)
    if status:
        query = query.where(Task.status == status)
    if queue:
        query = query.where(Task.queue == queue)
    if operation:
        query = query.where(Task.operation == operation)
    with session_scope() as session:
        return [TaskOut.model_validate(t) for t in session.execute(query).scalars()]


@router.get("/{task_id}", response_model=TaskDetailOut, summary="A Task with its attempts and log lines")
def get_task(task_id: int) -> TaskDetailOut:
    with session_scope() as session:
        task = session.execute(
            select(Task).where(Task.id == task_id).options(selectinload(Task.subtasks), selectinload(Task.logs))
        ).scalar_one_or_none()
        if task is None:
            raise HTTPException(404, f"task {task_id} does not exist")
        parents = session.execute(
            select(TaskDependency.depends_on_id).where(TaskDependency.task_id == task_id)
        ).scalars().all()
        detail = TaskDetailOut.model_validate({**TaskOut.model_validate(task).model_dump(),
                                               "params": task.params, "depends_on": sorted(parents),
                                               "subtasks": task.subtasks, "logs": task.logs})
    return detail
