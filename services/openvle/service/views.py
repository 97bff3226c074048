"""What the service layer returns: the API's JSON and what the pages render. Times are UTC with a
trailing Z. Nothing secret is ever a field here (no password hashes, tokens or Guacamole passwords)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from openvle.db.models import iso_utc

T = TypeVar("T")


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        return iso_utc(value) if isinstance(value, dt.datetime) else value


class Page(View, Generic[T]):
    """One page, newest first; pass `next_before` as `before` for the next one (null: no more)."""

    items: list[T]
    next_before: int | None = Field(description="the id to pass as `before` for the next page; null at the end")


# --- Tasks ----------------------------------------------------------------------------------------------


class SubTaskView(View):
    attempt: int
    status: str
    error: str | None
    worker: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class TaskLogView(View):
    attempt: int
    level: str
    message: str
    created_at: dt.datetime


class TaskView(View):
    id: int
    operation: str
    target: str | None
    queue: str
    status: str
    progress: int
    message: str | None
    error: str | None
    result: Any = None
    attempts: int
    max_attempts: int
    requested_by: str | None
    event_id: int | None
    vm_id: int | None
    rq_job_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    next_attempt_at: dt.datetime | None


class TaskDetailView(TaskView):
    params: dict[str, Any]
    depends_on: list[int] = Field(description="Tasks that must succeed before this one runs")
    dependents: list[int] = Field(description="Tasks that wait for this one")
    subtasks: list[SubTaskView] = Field(description="every attempt, oldest first")
    logs: list[TaskLogView]


class TaskRequest(View):
    """An action was asked for: its Task, and whether it is new or the same one already in flight."""

    task: TaskView
    created: bool


class ControlOutcome(View):
    task_id: int
    done: bool
    reason: str


class ControlResult(View):
    action: str
    dry_run: bool
    count: int = Field(description="Tasks it acts (dry run: would act) on")
    task_ids: list[int] = Field(description="their ids")
    skipped: list[ControlOutcome] = Field(description="Tasks it leaves alone, each with why")
    done: list[ControlOutcome] = Field(default_factory=list)


# --- accounts -------------------------------------------------------------------------------------------


class UserView(View):
    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    role: str
    active: bool
    has_password: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class SessionView(View):
    user: UserView
    csrf_token: str | None = Field(description="send it as X-CSRF-Token with every change a cookie authenticates")
    expires_at: dt.datetime | None


class TokenView(View):
    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class NewTokenView(TokenView):
    token: str = Field(description="the token itself: shown this once, never again")


class Message(View):
    message: str


# --- templates, events, VMs -----------------------------------------------------------------------------


class TemplateView(View):
    id: int
    name: str
    pve_vmid: int
    node: str
    clone_mode: str
    protocol: str
    port: int
    moodle_course_id: int | None
    created_at: dt.datetime


class MemberView(View):
    user_id: int
    username: str
    email: str
    first_name: str
    last_name: str
    role: str
    vm_id: int | None
    added_at: dt.datetime


class EventView(View):
    id: int
    name: str
    description: str | None
    status: str
    status_reason: str | None
    start_at: dt.datetime
    end_at: dt.datetime
    template_id: int
    template: str
    participants: int = Field(description="participants (not teachers) in the event now")
    teaches: bool = Field(description="whether the caller may manage it (a teacher of it, or an admin)")
    moodle_course_url: str | None
    created_at: dt.datetime
    deployed_at: dt.datetime | None
    archived_at: dt.datetime | None
    suspend_at: dt.datetime | None = Field(description="a break the daily lifecycle keeps: suspended from then")
    resume_at: dt.datetime | None = Field(description="and resumed from then")
    suspended_at: dt.datetime | None = Field(description="when its latest suspend was asked for")
    deploy_mode: str = Field(description="daily (EVENTS_START_PREP_TIME_DAYS before its start) or ready_by_start "
                                         "(in batches inside DEPLOY_WINDOW_HOURS before its start)")


class CapacityView(View):
    """Whether the event fits the cluster's memory and disk over its VMs' life (README, Capacity)."""

    verdict: str = Field(description="the worse of memory and disk: fits, tight, does not fit, or unknown (no node "
                                     "sync yet, template memory not learned); an unknown disk leaves it to memory")
    summary: str = Field(description="the verdict and its numbers in one sentence")
    participants: int
    per_vm: int = Field(description="bytes of memory one VM of the template takes")
    needed: int = Field(description="bytes: participants x per_vm")
    usable: int = Field(description="bytes: the allowed online nodes' memory x CAPACITY_MEMORY_RATIO")
    other_events: int = Field(description="bytes other events whose VMs live at the same time need")
    elsewhere: int = Field(description="bytes the nodes use besides this system's VMs")
    spare: int = Field(description="bytes left after this event; negative: short by that much")
    nodes: int
    window_start: dt.datetime = Field(description="its deploy (EVENTS_START_PREP_TIME_DAYS before the start)")
    window_end: dt.datetime = Field(description="its archive (EVENTS_END_PREP_TIME_DAYS after the end)")
    disk_verdict: str = Field(description="the disk's own verdict; unknown before node sync learns the template's "
                                          "disk and storage")
    storage: str | None = Field(description="the storage the clones' disks go to (the template's)")
    disk_per_vm: int = Field(description="bytes one clone needs there: the template's disk (full clone) or "
                                         "CAPACITY_LINKED_CLONE_DISK_PERCENT of it (linked clone)")
    disk_needed: int = Field(description="bytes: participants x disk_per_vm")
    disk_usable: int = Field(description="bytes: the storage's size x CAPACITY_DISK_RATIO (a shared one once)")
    disk_other_events: int = Field(description="bytes overlapping events need on the storage")
    disk_elsewhere: int = Field(description="bytes other disks use on the storage")
    disk_spare: int = Field(description="bytes left after this event; negative: short by that much")


class BatchView(View):
    """One batch of a spread deploy (README, Spread deploys)."""

    number: int
    run_at: dt.datetime = Field(description="when it is requested (UTC)")
    size: int = Field(description="participants it deploys (the last one: also whoever is still missing)")
    clone_seconds: int = Field(description="one clone's time the plan assumed (learned, or DEPLOY_CLONE_SECONDS)")
    over_capacity: bool = Field(description="the window had no room left for it: it runs at its end anyway")
    state: str = Field(description="planned (moves with every re-plan), requested, or done")
    task_id: int | None = Field(description="its deploy, once requested")


class EventDetailView(EventView):
    members: list[MemberView] = Field(description="teachers see everyone; a participant only themselves")
    capacity: CapacityView | None = Field(None, description="for its teachers and admins, until it is deployed")
    deploy_batches: list[BatchView] = Field(default_factory=list, description="ready_by_start: when each batch of "
                                                                              "its deploy runs")
    deploy_plan: str | None = Field(None, description="ready_by_start: the plan in one sentence")


class ProgressView(View):
    event_id: int
    name: str
    status: str
    reason: str | None
    operation: str | None = Field(description="event.deploy, event.archive, event.suspend or event.resume: the "
                                              "latest run")
    percent: int
    steps: int
    settled: int
    in_flight: bool
    stages: dict[str, dict[str, int]] = Field(description="per stage, how many steps are queued, running, done…")
    participants: dict[str, dict[str, str]] = Field(description="per user name, each stage's state")


class MembersAdded(View):
    added: list[MemberView]
    invited: list[str] = Field(description="user names who got an email to choose their first password")


class VmView(View):
    id: int
    name: str
    state: str
    status: str | None = Field(description="running or stopped, as Proxmox last said")
    node: str | None
    vmid: int | None
    lock: str | None
    event_id: int | None
    user_id: int | None
    owner: str | None
    template_id: int
    access_link: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class VmDetailView(VmView):
    tasks: list[TaskView] = Field(description="the VM's latest Tasks, newest first")


# --- monitoring and audit -------------------------------------------------------------------------------


class QueueView(View):
    name: str
    purpose: str
    max_retries: int
    retry_intervals: list[int]
    timeout: int
    result_ttl: int
    failure_ttl: int
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int
    finished: int
    canceled: int
    oldest_waiting_seconds: float | None = Field(description="age of the job waiting longest in the queue")
    workers: list[str]


class WorkerView(View):
    name: str
    role: str
    queues: list[str]
    state: str
    current_job: str | None
    current_task: int | None
    last_heartbeat: dt.datetime | None


class PeriodicView(View):
    name: str
    schedule: str
    last_run: dt.datetime | None
    next_run: dt.datetime | None


class SchedulerView(View):
    name: str
    last_heartbeat: dt.datetime | None
    jobs: list[PeriodicView]


class SchedulersView(View):
    schedulers: list[SchedulerView]
    last_periodic_heartbeat: str | None = Field(description="when the heartbeat job last ran on a worker")


class NodeView(View):
    name: str
    status: str
    cpu: float
    maxcpu: int
    mem: int
    maxmem: int
    uptime: int
    vms_running: int
    vms_total: int
    synced_at: dt.datetime | None
    clone_slots_in_use: int


class NodeMetricView(View):
    time: dt.datetime
    status: str | None
    cpu: float
    mem: int
    maxmem: int
    vms_running: int
    vms_total: int


class AuditView(View):
    id: int
    at: dt.datetime
    user_id: int | None
    username: str | None
    address: str | None
    via: str
    method: str
    path: str
    action: str
    object_type: str | None
    object_id: str | None
    outcome: int
    detail: str | None


class LabView(View):
    """A student's VM as "my labs" shows it: the state in words, what is pending, the last error."""

    vm: VmView
    event_name: str | None
    state: str = Field(description="running, stopped, being cloned, failed, being removed, missing or unknown")
    pending: str | None = Field(description="the action in flight (start, stop, reset, migrate), if any")
    pending_task_id: int | None
    last_error: str | None = Field(description="why the VM's latest finished Task failed, if it did")
    can_act: bool = Field(description="start, stop and reset are possible now")
    can_fresh_start: bool = Field(False, description="a fresh start (a new copy of the template) is possible now")
    fresh_start_after: dt.datetime | None = Field(
        None, description="a fresh start is possible again from then (RESET_TO_TEMPLATE_COOLDOWN)")


class MemberChange(View):
    """What adding one person to an event would do (the preview of a CSV upload)."""

    username: str
    email: str
    role: str
    change: str = Field(description="new account, existing account, already in, role changes")
    detail: str
