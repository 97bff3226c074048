"""What people hand in, checked once: templates, events and people, from the CLI's YAML files and the
API's JSON bodies alike. Each message names the field and how to fix it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

EXAMPLE_TIME = "2026-05-04T09:00:00Z"
USERNAME = re.compile(r"[a-z0-9._@-]{1,100}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TemplateSpec(Strict):
    name: str = Field(min_length=1, max_length=100, description="e.g. ubuntu-24.04")
    pve_vmid: int = Field(ge=100, le=999_999_999, description="the Proxmox id of the template VM")
    node: str = Field(min_length=1, max_length=64, description="the Proxmox node the template lives on")
    clone_mode: Literal["linked", "full"] = "linked"
    protocol: Literal["rdp", "vnc", "ssh"] = "rdp"
    port: int | None = Field(None, ge=1, le=65535, description="empty: the protocol's default")
    moodle_course_id: int | None = Field(None, ge=1, le=2**31 - 1,
                                         description="the Moodle course copied for each event")


class TemplatePatch(Strict):
    """Only the fields given change."""

    name: str | None = Field(None, min_length=1, max_length=100)
    pve_vmid: int | None = Field(None, ge=100, le=999_999_999)
    node: str | None = Field(None, min_length=1, max_length=64)
    clone_mode: Literal["linked", "full"] | None = None
    protocol: Literal["rdp", "vnc", "ssh"] | None = None
    port: int | None = Field(None, ge=1, le=65535)
    moodle_course_id: int | None = Field(None, ge=1, le=2**31 - 1)


class Person(Strict):
    username: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254)
    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        value = value.lower()
        if not USERNAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a user name: use lower-case letters, digits and . _ @ -")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address (write it as name@example.org)")
        return value


class Member(Person):
    """A person added to an event, as participant (gets a VM) or teacher."""

    role: Literal["participant", "teacher"] = "participant"


def _template_ref(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip() \
            or (isinstance(value, int) and not 1 <= value < 2**31):
        raise ValueError(f"{value!r} is not a template: give a template's name or id")
    return value


def utc(value: dt.datetime) -> dt.datetime:
    """An aware time as the naive UTC the database keeps."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class EventSpec(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10000)
    template: int | str = Field(description="a template's name or id")
    start: AwareDatetime = Field(description=f"ISO 8601 with a timezone, e.g. {EXAMPLE_TIME}")
    end: AwareDatetime
    participants: list[Person] = Field(default_factory=list, max_length=5000)
    teachers: list[Person] = Field(default_factory=list, max_length=500)
    status: Literal["draft", "scheduled"] = "scheduled"
    suspend_at: AwareDatetime | None = Field(None, description="a break: the daily lifecycle suspends it from then")
    resume_at: AwareDatetime | None = Field(None, description="the break's end: the lifecycle resumes it from then")
    deploy_mode: Literal["daily", "ready_by_start"] = Field(
        "daily", description="daily: deployed EVENTS_START_PREP_TIME_DAYS before its start; ready_by_start: in "
                             "batches inside the DEPLOY_WINDOW_HOURS before its start")

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> int | str:
        return _template_ref(value)

    @model_validator(mode="after")
    def _order(self):
        if self.end <= self.start:
            raise ValueError(f"end: {self.end.isoformat()} is not after start {self.start.isoformat()}: "
                             "an event ends after it starts")
        check_break(self.suspend_at, self.resume_at)
        return self

    def utc(self, field: str) -> dt.datetime | None:
        value = getattr(self, field)
        return utc(value) if value is not None else None


def check_break(suspend_at: dt.datetime | None, resume_at: dt.datetime | None) -> None:
    """A break ends after it begins; a resume without a suspend is no break."""
    if resume_at is not None and suspend_at is None:
        raise ValueError("resume_at: a break needs its suspend_at too (when it begins)")
    if suspend_at is not None and resume_at is not None and resume_at <= suspend_at:
        raise ValueError(f"resume_at: {resume_at.isoformat()} is not after suspend_at {suspend_at.isoformat()}: "
                         "a break ends after it begins")


class EventPatch(Strict):
    """Only the fields given change; the template and times only before the event is deployed."""

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10000)
    template: int | str | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    status: Literal["draft", "scheduled"] | None = None
    suspend_at: AwareDatetime | None = Field(None, description="a break's start (null: no break)")
    resume_at: AwareDatetime | None = Field(None, description="a break's end (null: resumed by hand)")
    deploy_mode: Literal["daily", "ready_by_start"] | None = Field(
        None, description="daily or ready_by_start (in batches before its start); only while draft or scheduled")

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> int | str | None:
        return None if value is None else _template_ref(value)
