"""Tasks (admins see all, teachers their events' Tasks): filters, keyset pages and each Task with its
attempts, log lines and dependencies, all keeping themselves current. Admins tick many and cancel,
requeue or force-fail them: a confirmation names how many and which (and which will be left alone,
and why) before anything happens, then the outcome of each and the Tasks' live states. The rules
are service/tasks' (the API's operator controls), never the page's."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from openvle.accounts.identity import Actor
from openvle.backend.common import Id, audit_as
from openvle.backend.pages.access import PageRoute, safe_next
from openvle.backend.pages.guard import admin_actor, teacher_actor
from openvle.backend.pages.inputs import parse, typed
from openvle.backend.pages.render import poll_answer, polled, render
from openvle.errors import Invalid
from openvle.queues import QUEUE_NAMES
from openvle.service import events, tasks
from openvle.service.tasks import STATUSES, ControlRequest, TaskFilter

router = APIRouter(route_class=PageRoute, include_in_schema=False)

FILTERS = ("status", "queue", "operation", "event_id", "vm_id", "requested_by", "created_after", "created_before")
PAGE = 50
Action = Literal["cancel", "requeue", "force-fail"]
# (the button, the confirmation's verb, what is done)
WORDS = {"cancel": ("Cancel", "cancel", "Cancelled"), "requeue": ("Requeue", "requeue", "Requeued"),
         "force-fail": ("Force-fail", "force-fail", "Force-failed")}
MAX_IDS_SHOWN = 200  # a confirmation lists this many Tasks by name, then says how many more


def _query(values: dict[str, str], **extra: object) -> str:
    return urlencode({**{k: v for k, v in values.items() if v}, **{k: v for k, v in extra.items() if v}})


def _ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise Invalid("ids: a comma-separated list of Task ids, like 12,13") from None
    if any(not 1 <= i <= 2**31 - 1 for i in ids):
        raise Invalid("ids: Task ids are positive whole numbers")
    return ids


def _rows(request: Request, actor: Actor, where: TaskFilter, values: dict[str, str], before: int | None,
          select_all: bool = False):
    page = tasks.list_tasks(actor, where, before, PAGE)
    url = "/tasks/rows?" + _query(values, before=before)
    return polled(request, "admin/tasks/_rows.html", actor, url=url, box_id="task-rows", every="2s",
                  items=page.items, selectable=actor.is_admin, select_all=select_all,
                  older=f"/tasks?{_query(values, before=page.next_before)}" if page.next_before else None)


def _picked_rows(request: Request, actor: Actor, ids: list[int]):
    url = "/tasks/rows?" + urlencode({"ids": ",".join(map(str, ids))})
    return polled(request, "admin/tasks/_rows.html", actor, url=url, box_id="task-rows", every="1s",
                  items=tasks.tasks_by_ids(actor, ids), selectable=False, select_all=False, older=None)


@router.get("/tasks", name="pages.tasks")
def task_list(request: Request, before: int | None = Query(None, ge=1, le=2**31 - 1),
              select: Literal["", "all"] = "", actor: Actor = Depends(teacher_actor)) -> Response:
    values = typed(request.query_params, FILTERS)
    where, errors = parse(TaskFilter, values)
    rows = _rows(request, actor, where, values, before, select == "all")[0] if where is not None else None
    return render(request, "admin/tasks/index.html", actor, status=422 if errors else 200, title="Tasks",
                  values=values, errors=errors, rows=rows, statuses=STATUSES, queues=QUEUE_NAMES,
                  operations=tasks.operation_names(), events=events.list_events(actor),
                  here=f"/tasks?{_query(values, before=before)}",
                  select_url=f"/tasks?{_query(values, before=before, select='all')}",
                  newest=f"/tasks?{_query(values)}" if before else None, words=WORDS)


@router.get("/tasks/rows", name="pages.task_rows")
def task_rows(request: Request, before: int | None = Query(None, ge=1, le=2**31 - 1),
              ids: str = Query("", max_length=20000), actor: Actor = Depends(teacher_actor)) -> Response:
    if ids:
        return poll_answer(request, *_picked_rows(request, actor, _ids(ids)))
    values = typed(request.query_params, FILTERS)
    where, errors = parse(TaskFilter, values)
    if where is None:
        raise Invalid("; ".join(f"{name}: {message}" for name, message in errors.items()))
    return poll_answer(request, *_rows(request, actor, where, values, before))


def _task_box(request: Request, actor: Actor, task_id: int):
    return polled(request, "admin/tasks/_task.html", actor, url=f"/tasks/{task_id}/box", box_id=f"task-{task_id}",
                  every="2s", task=tasks.get_task(actor, task_id), words=WORDS)


@router.get("/tasks/{task_id}", name="pages.task")
def task_page(task_id: Id, request: Request, actor: Actor = Depends(teacher_actor)) -> Response:
    box, _ = _task_box(request, actor, task_id)
    return render(request, "admin/tasks/task.html", actor, title=f"Task {task_id}", box=box, task_id=task_id)


@router.get("/tasks/{task_id}/box", name="pages.task_box")
def task_box(task_id: Id, request: Request, actor: Actor = Depends(teacher_actor)) -> Response:
    return poll_answer(request, *_task_box(request, actor, task_id))


@router.post("/tasks/confirm", name="pages.tasks_confirm")
async def confirm(request: Request, action: Action = Form(...), ids: list[int] = Form([]),
                  back: str = Form("/tasks", max_length=4000), actor: Actor = Depends(admin_actor)) -> Response:
    """Nothing changes yet: a dry run says which of the ticked Tasks the control would act on."""
    back = safe_next(back) or "/tasks"
    if not ids:
        return render(request, "admin/tasks/confirm.html", actor, status=422, title="Select Tasks first",
                      action=action, words=WORDS[action], back=back, result=None, which=[],
                      error="No Task is selected: tick the box of each Task first, then press the button again.")
    result = await run_in_threadpool(tasks.control, actor, action, ControlRequest(task_ids=ids, dry_run=True))
    which = await run_in_threadpool(tasks.tasks_by_ids, actor, result.task_ids[:MAX_IDS_SHOWN])
    verb = WORDS[action][0]
    title = (f"{verb} {result.count} Task{'s' if result.count != 1 else ''}?" if result.count
             else f"Nothing to {WORDS[action][1]}")
    return render(request, "admin/tasks/confirm.html", actor, title=title, action=action, words=WORDS[action],
                  back=back, result=result, which=which, more=max(0, result.count - MAX_IDS_SHOWN), error=None)


@router.post("/tasks/act", name="pages.tasks_act")
async def act(request: Request, action: Action = Form(...), ids: list[int] = Form([]),
              back: str = Form("/tasks", max_length=4000), actor: Actor = Depends(admin_actor)) -> Response:
    back = safe_next(back) or "/tasks"
    if not ids:
        raise Invalid("ids: no Task was named: go back to the list and tick the Tasks first")
    result = await run_in_threadpool(tasks.control, actor, action, ControlRequest(task_ids=ids))
    audit_as(request, "task", None, detail=f"{action} of {result.count} task(s), {len(result.skipped)} skipped: "
                                           f"{result.task_ids[:50]}")
    rows, _ = await run_in_threadpool(_picked_rows, request, actor, sorted(set(ids)))
    return render(request, "admin/tasks/done.html", actor, title=f"{WORDS[action][2]} {result.count} "
                  f"Task{'s' if result.count != 1 else ''}", result=result, rows=rows, back=back, words=WORDS[action])
