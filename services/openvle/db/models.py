"""Task, SubTask and their log: the system's record of every operation and every attempt.

All times are naive UTC (MariaDB DATETIME has no zone); the API renders them with a trailing Z.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints so Alembic migrations are identical on MariaDB and SQLite.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UtcDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso_utc(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a trailing Z, from a naive-UTC (ours) or an aware (RQ's) time."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TaskStatus:
    QUEUED = "queued"  # waiting in RQ: first attempt, a retry, or a dependency
    PROCESSING = "processing"  # an attempt is running
    SUCCESS = "success"
    ERROR = "error"  # failed for good: permanent error or retries used up
    CANCELLED = "cancelled"  # never ran to the end: a dependency failed, or an admin stopped it

    ACTIVE = (QUEUED, PROCESSING)
    FINAL = (SUCCESS, ERROR, CANCELLED)


class AttemptStatus:
    PROCESSING = "processing"
    SUCCESS = "success"
    ERROR = "error"


class TaskDependency(Base):
    """`task_id` runs only after `depends_on_id` succeeded."""

    __tablename__ = "task_dependencies"

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation: Mapped[str] = mapped_column(String(100))  # registered operation name, e.g. "demo.sleep"
    target: Mapped[str | None] = mapped_column(String(200))  # what it acts on, e.g. "event:4/participant:9"
    queue: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)  # 0-100
    message: Mapped[str | None] = mapped_column(String(500))  # latest progress message
    error: Mapped[str | None] = mapped_column(Text)  # last error; for cancelled: why
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    requested_by: Mapped[str | None] = mapped_column(String(100))  # "user:<name>", "scheduler", "task:<id>"…
    # What it concerns, for filters and for who may see it (set by enqueue from params and target).
    event_id: Mapped[int | None] = mapped_column(Integer)
    vm_id: Mapped[int | None] = mapped_column(Integer)
    rq_job_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    subtasks: Mapped[list[SubTask]] = relationship(
        back_populates="task", order_by="SubTask.attempt", cascade="all, delete-orphan", passive_deletes=True
    )
    logs: Mapped[list[TaskLog]] = relationship(
        order_by="TaskLog.id", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_tasks_status_updated_at", "status", "updated_at"),
        Index("ix_tasks_operation_target", "operation", "target"),
        Index("ix_tasks_created_at", "created_at"),
        Index("ix_tasks_requested_by", "requested_by"),  # an orchestrator follows the steps it made
        # Keyset pages (newest first) of the API's task list, whole or filtered.
        Index("ix_tasks_status_id", "status", "id"),
        Index("ix_tasks_queue_id", "queue", "id"),
        Index("ix_tasks_event_id_id", "event_id", "id"),
        Index("ix_tasks_vm_id_id", "vm_id", "id"),
    )


class SubTask(Base):
    """One attempt of a Task. RQ keeps only the last failure; this is the whole history."""

    __tablename__ = "subtasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=AttemptStatus.PROCESSING)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    task: Mapped[Task] = relationship(back_populates="subtasks")

    __table_args__ = (UniqueConstraint("task_id", "attempt"),)


class TaskLog(Base):
    """Log lines a job wrote for its Task, shown with the Task."""

    __tablename__ = "task_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


# --- Proxmox inventory: what node sync saw, and the VMs this system made ---------------------------


class NodeStatus:
    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class Node(Base):
    """A Proxmox node as the last sync saw it; pages and placement read this, never Proxmox."""

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.UNKNOWN)
    cpu: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 of maxcpu
    maxcpu: Mapped[int] = mapped_column(Integer, default=0)
    mem: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes
    maxmem: Mapped[int] = mapped_column(BigInteger, default=0)
    uptime: Mapped[int] = mapped_column(BigInteger, default=0)
    vms_running: Mapped[int] = mapped_column(Integer, default=0)
    vms_total: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class NodeStorage(Base):
    """A storage as one node sees it at the last sync (a shared one appears on every node: the
    capacity check counts it once)."""

    __tablename__ = "node_storages"
    __table_args__ = (UniqueConstraint("node", "storage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(64))
    storage: Mapped[str] = mapped_column(String(64))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="unknown")  # available when its node answers
    disk: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes used
    maxdisk: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes in all
    synced_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class CloneMode:
    LINKED = "linked"
    FULL = "full"


class Template(Base):
    """A Proxmox template participants' VMs are cloned from."""

    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    pve_vmid: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(64))  # where the template lives (sync keeps it current)
    clone_mode: Mapped[str] = mapped_column(String(8), default=CloneMode.LINKED)
    protocol: Mapped[str] = mapped_column(String(8), default="rdp")  # rdp, vnc or ssh (Guacamole)
    port: Mapped[int] = mapped_column(Integer, default=3389)
    maxmem: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes, from Proxmox at sync
    maxdisk: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes of its disks, from Proxmox at sync
    storage: Mapped[str | None] = mapped_column(String(64))  # where its disks (and so its clones') are, from sync
    moodle_course_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class VmState:
    PROVISIONING = "provisioning"  # clone requested or running
    READY = "ready"  # cloned and configured
    DELETING = "deleting"
    DELETED = "deleted"
    MISSING = "missing"  # in the DB, gone from Proxmox (seen by node sync)

    LIVE = (PROVISIONING, READY, DELETING, MISSING)


class Vm(Base):
    """A VM this system made (or is making). The row exists before the clone, so a retry finds it."""

    __tablename__ = "vms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))  # DNS-name rules, as Proxmox requires
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id"))
    vmid: Mapped[int | None] = mapped_column(Integer, unique=True)  # allocated before the clone starts
    former_vmid: Mapped[int | None] = mapped_column(Integer)  # after deletion: the id is free for reuse
    node: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=VmState.PROVISIONING)
    status: Mapped[str | None] = mapped_column(String(16))  # running / stopped as Proxmox says
    lock: Mapped[str | None] = mapped_column(String(32))
    upid: Mapped[str | None] = mapped_column(String(200))  # the Proxmox task this VM waits on
    event_id: Mapped[int | None] = mapped_column(Integer, index=True)
    participant_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # whose VM it is
    guac_connection_id: Mapped[str | None] = mapped_column(String(64))
    guac_sharing_profile_id: Mapped[str | None] = mapped_column(String(64))
    access_link: Mapped[str | None] = mapped_column(String(500))  # Guacamole's #/client/<id> URL
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    missing_since: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # A fresh start: the new VM names the one it replaces, and the old one its replacement (recorded
    # before the clone, so a retried fresh start finds it instead of making a second one).
    replaces_id: Mapped[int | None] = mapped_column(Integer)
    replaced_by_id: Mapped[int | None] = mapped_column(Integer)

    template: Mapped[Template] = relationship()


# --- people and mail ----------------------------------------------------------------------------------


class AccountRole:
    """What a user may do in the API: see accounts/ and authz.py."""

    STUDENT = "student"  # their own VMs and Tasks
    TEACHER = "teacher"  # + the events they teach, and creating events
    ADMIN = "admin"  # everything

    ALL = (STUDENT, TEACHER, ADMIN)
    RANK = {STUDENT: 0, TEACHER: 1, ADMIN: 2}


class User(Base):
    """A person and their account: participant or teacher of events, or an admin. Their Guacamole
    and Moodle accounts are named after it; they log in to the API with a password or a token."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)  # lower case: Moodle insists
    email: Mapped[str] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    # Generated on first provisioning, kept only encrypted with SECRET_KEY (openvle.credentials) and put
    # into the access email when it is sent; never logged, never stored in clear.
    guacamole_password_encrypted: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    role: Mapped[str] = mapped_column(String(16), default=AccountRole.STUDENT, server_default=AccountRole.STUDENT)
    password_hash: Mapped[str | None] = mapped_column(String(255))  # argon2id; None: no password set yet
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("1"))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class EmailStatus:
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class Email(Base):
    """One email: rendered when queued, delivered by a Task on the mails queue."""

    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))  # the template it was rendered from
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(255))
    body_text: Mapped[str] = mapped_column(LongText)
    body_html: Mapped[str | None] = mapped_column(LongText)
    status: Mapped[str] = mapped_column(String(16), default=EmailStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_emails_status_sent_at", "status", "sent_at"),)


# --- events ------------------------------------------------------------------------------------------


class EventStatus:
    DRAFT = "draft"  # being prepared: the lifecycle leaves it alone
    SCHEDULED = "scheduled"  # the lifecycle deploys it EVENTS_START_PREP_TIME_DAYS before its start
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    DEPLOYED_WITH_FAILURES = "deployed_with_failures"  # some participants' steps failed: see status_reason
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    FAILED = "failed"  # archiving failed: see status_reason
    SUSPENDING = "suspending"  # a break starts: access taken away, every VM stopped
    SUSPENDED = "suspended"  # on a break: VMs, people and course kept, nothing runs (see status_reason)
    RESUMING = "resuming"  # the break ends: VMs started, access given back; then deployed again

    ALL = (DRAFT, SCHEDULED, DEPLOYING, DEPLOYED, DEPLOYED_WITH_FAILURES, ARCHIVING, ARCHIVED, FAILED, SUSPENDING,
           SUSPENDED, RESUMING)


class Role:
    PARTICIPANT = "participant"
    TEACHER = "teacher"


class Event(Base):
    """A course or lab: a VM, browser access and a course seat for every participant, for a while."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    start_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    end_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    template_id: Mapped[int] = mapped_column(ForeignKey("templates.id"))
    status: Mapped[str] = mapped_column(String(32), default=EventStatus.SCHEDULED, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)  # who failed and why
    active_task_id: Mapped[int | None] = mapped_column(Integer)  # the deploy/archive in flight, if any
    moodle_course_id: Mapped[int | None] = mapped_column(Integer)
    moodle_course_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    deployed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    archived_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # A break the daily lifecycle keeps: suspended from suspend_at, resumed from resume_at.
    suspend_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    resume_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # its latest suspend began
    # When its teachers and the admins were told it does not fit the cluster (cleared once it fits).
    capacity_alerted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # daily: the lifecycle deploys it EVENTS_START_PREP_TIME_DAYS before; ready_by_start: in batches
    # inside DEPLOY_WINDOW_HOURS before its start (spread.py).
    deploy_mode: Mapped[str] = mapped_column(String(16), default="daily", server_default="daily")

    template: Mapped[Template] = relationship()


class Participant(Base):
    """A person in an event, as participant (gets a VM) or teacher (sees every VM, read-only)."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(16), default=Role.PARTICIPANT)
    vm_id: Mapped[int | None] = mapped_column(ForeignKey("vms.id", ondelete="SET NULL"))
    access_email_id: Mapped[int | None] = mapped_column(Integer)
    # The course link comes in its own email once enrolment succeeded (never holding up lab access).
    course_email_id: Mapped[int | None] = mapped_column(Integer)
    notice_sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # "starts in N days", once
    fresh_start_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # their latest fresh start asked
    deploy_batch: Mapped[int | None] = mapped_column(Integer)  # the spread deploy batch that took them
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("event_id", "user_id"),)


class DeployBatch(Base):
    """One batch of a spread deploy (spread.py): planned (requested_at empty: moved by every re-plan),
    then requested once by the periodic trigger, then done when its deploy settled."""

    __tablename__ = "deploy_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … in run order
    run_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    size: Mapped[int] = mapped_column(Integer)  # participants it deploys
    clone_seconds: Mapped[int] = mapped_column(Integer)  # one clone's time the plan assumed
    over_capacity: Mapped[bool] = mapped_column(Boolean, default=False)  # the window had no room left for it
    requested_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    task_id: Mapped[int | None] = mapped_column(Integer)
    done_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("event_id", "number"),)


# --- accounts: tokens, browser sessions, one-time links, audit ---------------------------------------


class ApiToken(Base):
    """A personal token for scripts (`Authorization: Bearer …`). Only its SHA-256 is kept: the token is
    shown once, when it is made."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, so people can tell tokens apart
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class UserSession(Base):
    """A browser's login: the cookie holds a random token, the row only its SHA-256."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    address: Mapped[str | None] = mapped_column(String(64))


class AccountLink(Base):
    """A one-time link that sets a password (first password of a new account, or a reset)."""

    __tablename__ = "account_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # invite or reset
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # None until the email is sent
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Every request that changes something: who, when, from where, what, on which object, the outcome."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: the record outlives the account
    username: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(16))  # session, token, cli, anonymous
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[int] = mapped_column(Integer)  # the HTTP status (CLI: 200 done, 4xx refused)
    detail: Mapped[str | None] = mapped_column(String(1000))

    __table_args__ = (
        Index("ix_audit_log_user_id_id", "user_id", "id"),
        Index("ix_audit_log_object", "object_type", "object_id", "id"),
        Index("ix_audit_log_action_id", "action", "id"),
    )
