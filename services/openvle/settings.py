"""Every environment variable the system reads: typed, validated, with its default.

`.env.example` mirrors this file (a test keeps them in step). A bad value stops the process at start
with one line per variable naming it, the value and what is allowed: see `SettingsError`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openvle.queues import QUEUE_NAMES

DEFAULT_SQLITE_PATH = Path("var") / "openvle.sqlite3"


def _queue_overrides() -> dict[str, Any]:
    """Per-queue timeout and TTL overrides: QUEUE_<NAME>_TIMEOUT / _RESULT_TTL / _FAILURE_TTL."""
    fields: dict[str, Any] = {}
    for name in QUEUE_NAMES:
        upper = name.upper()
        fields[f"QUEUE_{upper}_TIMEOUT"] = (
            int | None,
            Field(None, ge=1, description=f"seconds a {name} job may run; empty = the queue table's value"),
        )
        fields[f"QUEUE_{upper}_RESULT_TTL"] = (
            int | None,
            Field(None, ge=0, description=f"seconds a finished {name} job stays in Redis; empty = table"),
        )
        fields[f"QUEUE_{upper}_FAILURE_TTL"] = (
            int | None,
            Field(None, ge=1, description=f"seconds a failed {name} job stays in Redis; empty = table"),
        )
    return fields


class SettingsError(Exception):
    """Raised with one human line per bad variable; the CLI prints it and exits non-zero."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", validate_default=True
    )

    # --- what this process is -------------------------------------------------------------------
    SERVICE_ROLE: str | None = Field(
        None, description="backend, scheduler, worker, worker-vm-clone, worker-periodic or worker-all"
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="one of DEBUG, INFO, WARNING, ERROR"
    )

    # --- stores -----------------------------------------------------------------------------------
    REDIS_URL: str = Field(
        "redis://localhost:6379/0", description="a redis://, rediss:// or unix:// URL"
    )
    DATABASE_URL: str = Field(
        f"sqlite:///{DEFAULT_SQLITE_PATH}",
        description="a SQLAlchemy URL: mysql+pymysql://user:pass@host/db, mariadb+pymysql://… or sqlite:///path",
    )
    MONGO_URL: str | None = Field(None, description="a mongodb:// URL; empty = node metric history is not kept")

    # --- retries and schedules ------------------------------------------------------------------
    WORKER_MAX_RETRY: int = Field(5, ge=0, le=100, description="an integer from 0 to 100")
    WORKER_PVE_PERIODIC_INTERVAL: int = Field(60, ge=5, le=86400, description="seconds, 5 to 86400")
    WORKER_MAINTENANCE_INTERVAL: int = Field(
        30, ge=5, le=3600, description="seconds between a worker's registry cleanups, 5 to 3600"
    )
    WORKER_JOB_MONITORING_INTERVAL: int = Field(
        10, ge=1, le=300, description="seconds between job heartbeats, 1 to 300"
    )
    RECONCILE_INTERVAL: int = Field(
        60, ge=5, le=3600, description="seconds between Task/RQ reconciliations, 5 to 3600"
    )
    RECONCILE_GRACE: int = Field(
        60, ge=5, le=3600, description="seconds a Task may disagree with RQ before it is repaired"
    )
    SCHEDULER_HEARTBEAT_INTERVAL: int = Field(
        60, ge=1, le=3600, description="seconds between scheduler heartbeat jobs, 1 to 3600"
    )
    TASK_RETENTION_DAYS: int = Field(
        30, ge=1, le=3650, description="days finished Tasks are kept, 1 to 3650"
    )
    MAIL_MAX_AGE_WEEKS: int = Field(4, ge=1, le=520, description="weeks, 1 to 520")
    EVENTS_START_PREP_TIME_DAYS: int = Field(7, ge=0, le=365, description="days, 0 to 365")
    EVENTS_END_PREP_TIME_DAYS: int = Field(7, ge=0, le=365, description="days, 0 to 365")

    # --- backend ----------------------------------------------------------------------------------
    BACKEND_HOST: str = Field("127.0.0.1", description="address the HTTP API listens on")
    BACKEND_PORT: int = Field(8000, ge=1, le=65535, description="a TCP port, 1 to 65535")
    BACKEND_MIGRATE_ON_START: bool = Field(
        True, description="true or false: the backend upgrades the database schema at start"
    )

    # --- Proxmox VE -------------------------------------------------------------------------------
    PVE_HOST: str | None = Field(None, description="Proxmox API host name or address")
    PVE_PORT: int = Field(8006, ge=1, le=65535, description="a TCP port, 1 to 65535")
    PVE_USER: str | None = Field(None, description="API user, e.g. openvle@pve")
    PVE_TOKEN_NAME: str | None = Field(None, description="API token id (the part after '!')")
    PVE_TOKEN_VALUE: SecretStr | None = Field(None, description="API token secret")
    PVE_VERIFY_SSL: str = Field(
        "true", description="true, false, or the path of a CA bundle that signs the Proxmox certificate"
    )
    PVE_TIMEOUT: int = Field(30, ge=1, le=600, description="seconds per HTTP call, 1 to 600")

    # --- Guacamole --------------------------------------------------------------------------------
    GUACAMOLE_URL: str | None = Field(None, description="an http(s):// URL, e.g. https://guac.example/guacamole")
    GUACAMOLE_USER: str | None = Field(None, description="admin user name")
    GUACAMOLE_PASSWORD: SecretStr | None = Field(None, description="admin password")
    GUACAMOLE_DATASOURCE: str = Field("mysql", description="data source name, e.g. mysql or postgresql")

    # --- Moodle -----------------------------------------------------------------------------------
    MOODLE_URL: str | None = Field(None, description="an http(s):// URL of the Moodle site")
    MOODLE_TOKEN: SecretStr | None = Field(None, description="web service token")

    # --- SMTP -------------------------------------------------------------------------------------
    SMTP_HOST: str = Field("localhost", description="SMTP server host")
    SMTP_PORT: int = Field(25, ge=1, le=65535, description="a TCP port, 1 to 65535")
    SMTP_USER: str | None = Field(None, description="SMTP user; empty = no authentication")
    SMTP_PASSWORD: SecretStr | None = Field(None, description="SMTP password")
    SMTP_TLS: Literal["none", "starttls", "ssl"] = Field("none", description="one of none, starttls, ssl")
    MAIL_FROM: str = Field("OpenVLE <noreply@localhost>", description="From address of every email")

    # --- validators -------------------------------------------------------------------------------
    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("bad scheme")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("no socket path")
        db = parts.path.lstrip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise ValueError("bad db index")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError("not a URL") from exc
        if url.drivername in ("mysql", "mariadb"):  # the image ships pymysql, not mysqlclient
            url = url.set(drivername=f"{url.drivername}+pymysql")
        if url.drivername not in ("sqlite", "mysql+pymysql", "mariadb+pymysql"):
            raise ValueError("unsupported driver")
        if url.drivername != "sqlite" and not (url.host and url.database):
            raise ValueError("host or database missing")
        return url.render_as_string(hide_password=False)

    @field_validator("MONGO_URL")
    @classmethod
    def _mongo_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("mongodb", "mongodb+srv") or not parts.netloc:
                raise ValueError("bad scheme")
        return value

    @field_validator("GUACAMOLE_URL", "MOODLE_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("bad scheme")
        return value.rstrip("/") if value else value

    @field_validator("PVE_VERIFY_SSL")
    @classmethod
    def _verify_ssl(cls, value: str) -> str:
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "false", "0", "no"):
            return "true" if lowered in ("true", "1", "yes") else "false"
        if not Path(value).is_file():
            raise ValueError("not a boolean and no such file")
        return value

    # --- helpers ----------------------------------------------------------------------------------
    def secrets(self) -> list[str]:
        """Every secret value set, for log masking."""
        values = [
            v.get_secret_value()
            for v in (self.PVE_TOKEN_VALUE, self.GUACAMOLE_PASSWORD, self.MOODLE_TOKEN, self.SMTP_PASSWORD)
            if v is not None
        ]
        for url in (self.REDIS_URL, self.DATABASE_URL, self.MONGO_URL):
            if url and urlsplit(url).password:
                values.append(urlsplit(url).password)
        return [v for v in values if len(v) >= 3]

    def queue_override(self, queue: str, what: str) -> int | None:
        return getattr(self, f"QUEUE_{queue.upper()}_{what}")

    def public_items(self) -> list[tuple[str, str]]:
        """(name, value) of every setting, secrets and URL passwords masked: for `openvle config`."""
        items = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None:
                shown = ""
            elif name.endswith("_URL"):
                shown = mask_url(str(value))
            else:
                shown = str(value).lower() if isinstance(value, bool) else str(value)
            items.append((name, shown))
        return items


# The queue table (queues.py) adds QUEUE_<NAME>_TIMEOUT / _RESULT_TTL / _FAILURE_TTL per queue.
Settings = create_model("Settings", __base__=_Settings, **_queue_overrides())


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")


def mask_url(text: str) -> str:
    """Hide the password of any URL in `text`."""
    return _URL_PASSWORD.sub(r"\1********\3", text)


def _describe(name: str) -> str:
    field = Settings.model_fields.get(name)
    if field is None:
        return "see .env.example"
    default = field.default
    hint = field.description or "see .env.example"
    if default is not None and not isinstance(default, SecretStr):
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        return f"{hint} (default {shown})"
    return hint


def load_settings() -> _Settings:
    """Read and validate the environment; raise SettingsError with one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            field = Settings.model_fields.get(name)
            secret = field is not None and "SecretStr" in str(field.annotation)
            shown = "(hidden)" if secret else repr(mask_url(str(error.get("input"))))
            lines.append(f"invalid setting {name}={shown}: expected {_describe(name)}")
        raise SettingsError(lines) from None



@functools.lru_cache(maxsize=1)
def get_settings() -> _Settings:
    """The process-wide settings, read once."""
    return load_settings()
