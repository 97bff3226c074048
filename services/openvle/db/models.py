"""Task, SubTask and their log: the system's record of every operation and every attempt.

All times are naive UTC (MariaDB DATETIME has no zone); the API renders them with a trailing Z.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
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
    requested_by: Mapped[str | None] = mapped_column(String(100))
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
