"""Every environment variable the system reads: typed, validated, with its default.

`.env.example` mirrors this file (a test keeps them in step). A bad value stops the process at start
with one line per variable naming it, the value and what is allowed: see `SettingsError`. What people
read about the settings (.env.example, those lines, values masked) is made in settings_help.py.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from openvle.queues import QUEUE_NAMES
from openvle.settings_help import error_lines, shown

DEFAULT_SQLITE_PATH = Path("var") / "openvle.sqlite3"


def setting(default: Any, purpose: str, allowed: str, **constraints: Any) -> Any:
    """A field with what it is for (.env.example) and what it accepts (the start-up error)."""
    return Field(default, description=purpose, json_schema_extra={"allowed": allowed}, **constraints)


def _queue_overrides() -> dict[str, Any]:
    """Per-queue timeout and TTL overrides: QUEUE_<NAME>_TIMEOUT / _RESULT_TTL / _FAILURE_TTL."""
    fields: dict[str, Any] = {}
    for name in QUEUE_NAMES:
        upper = name.upper()
        fields[f"QUEUE_{upper}_TIMEOUT"] = (
            int | None,
            setting(None, f"seconds a {name} job may run; empty = the queue table's value", "seconds, >= 1", ge=1),
        )
        fields[f"QUEUE_{upper}_RESULT_TTL"] = (
            int | None,
            setting(None, f"seconds a finished {name} job stays in Redis; empty = the table's value",
                    "seconds, >= 60 (the worker reads each outcome from it)", ge=60),
        )
        fields[f"QUEUE_{upper}_FAILURE_TTL"] = (
            int | None,
            setting(None, f"seconds a failed {name} job stays in Redis; empty = the table's value",
                    "seconds, >= 1", ge=1),
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
    SERVICE_ROLE: str | None = setting(
        None, "which part of the system this process runs",
        "backend, scheduler, worker, worker-vm-clone, worker-periodic or worker-all")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", "lowest level logged to stdout", "one of DEBUG, INFO, WARNING, ERROR")

    # --- stores -----------------------------------------------------------------------------------
    REDIS_URL: str = setting(
        "redis://localhost:6379/0", "Redis holding the RQ queues", "a redis://, rediss:// or unix:// URL")
    DATABASE_URL: str = setting(
        f"sqlite:///{DEFAULT_SQLITE_PATH}", "database of Tasks and the domain (MariaDB in production)",
        "a SQLAlchemy URL: mysql+pymysql://user:pass@host/db, mariadb+pymysql://… or sqlite:///path")
    MONGO_URL: str | None = setting(
        None, "MongoDB for node metric history; empty = history is not kept", "a mongodb:// URL")

    # --- retries and schedules ------------------------------------------------------------------
    WORKER_MAX_RETRY: int = setting(
        5, "retries of every queue but pve_periodic and core_periodic (fixed at 3)",
        "an integer from 0 to 100", ge=0, le=100)
    WORKER_PVE_PERIODIC_INTERVAL: int = setting(
        60, "seconds between Proxmox node syncs", "seconds, 5 to 86400", ge=5, le=86400)
    WORKER_MAINTENANCE_INTERVAL: int = setting(
        10, "seconds between an idle worker's looks for dead workers (their jobs retried, their scheduler "
        "locks freed) and RQ registry cleanups", "seconds, 5 to 3600", ge=5, le=3600)
    WORKER_JOB_MONITORING_INTERVAL: int = setting(
        3, "seconds between heartbeats of a busy worker; a worker 3 heartbeats late, or whose process is gone "
        "(seen from the same machine), is taken for dead and its job retried", "seconds, 1 to 300", ge=1, le=300)
    WORKER_LIVES_DIR: str = setting(
        "var/workers", "directory where a worker leaves a note of its name: a container started again "
        "(after kill -9 or the OOM killer) finds its killed worker's note there and retries its job at once; "
        "the container's own, never a volume shared with another", "a directory path", min_length=1)
    RECONCILE_INTERVAL: int = setting(
        60, "seconds between repairs of Tasks that disagree with their RQ job", "seconds, 5 to 3600",
        ge=5, le=3600)
    RECONCILE_GRACE: int = setting(
        60, "seconds a Task may disagree with its RQ job before it is repaired", "seconds, 5 to 3600",
        ge=5, le=3600)
    SCHEDULER_HEARTBEAT_INTERVAL: int = setting(
        60, "seconds between the scheduler's heartbeat jobs", "seconds, 1 to 3600", ge=1, le=3600)
    TASK_RETENTION_DAYS: int = setting(
        30, "days finished Tasks and their attempts are kept", "days, 1 to 3650", ge=1, le=3650)
    MAIL_MAX_AGE_WEEKS: int = setting(
        4, "weeks sent emails are kept before the daily cleanup deletes them", "weeks, 1 to 520", ge=1, le=520)
    EVENTS_START_PREP_TIME_DAYS: int = setting(
        7, "days before its start an event is deployed", "days, 0 to 365", ge=0, le=365)
    EVENTS_NOTICE_DAYS: int = setting(
        3, "days before its start each participant gets one 'your lab starts in N days' email", "days, 1 to 60",
        ge=1, le=60)
    EVENTS_END_PREP_TIME_DAYS: int = setting(
        7, "days after its end an event is archived", "days, 0 to 365", ge=0, le=365)
    CAPACITY_MEMORY_RATIO: float = setting(
        0.9, "share of the allowed nodes' memory events may plan with (the rest is the hosts'; above 1 "
        "over-commits, e.g. with ballooning)", "a number from 0.1 to 4", ge=0.1, le=4)
    CAPACITY_TIGHT_PERCENT: int = setting(
        10, "an event that leaves less than this % of the usable memory to spare is shown as tight",
        "percent, 0 to 90", ge=0, le=90)
    CAPACITY_DISK_RATIO: float = setting(
        0.9, "share of the clones' storage events may plan with (thin storage may over-commit: above 1)",
        "a number from 0.1 to 4", ge=0.1, le=4)
    CAPACITY_LINKED_CLONE_DISK_PERCENT: int = setting(
        20, "% of its template's disk a linked clone is counted as needing (it shares the template's base and "
        "grows with use); a full clone needs all of it", "percent, 1 to 100", ge=1, le=100)
    DEPLOY_WINDOW_HOURS: int = setting(
        12, "hours before its start a 'ready by start' event is deployed in batches (its window)",
        "hours, 1 to 336", ge=1, le=336)
    DEPLOY_BATCH_MINUTES: int = setting(
        30, "minutes one batch of a spread deploy may take: batches start this far apart and are sized to the "
        "clones that fit in it", "minutes, 5 to 720", ge=5, le=720)
    DEPLOY_CLONE_SECONDS: int = setting(
        300, "seconds one clone is assumed to take when planning batches, until clones of the template taught "
        "the real time", "seconds, 10 to 86400", ge=10, le=86400)
    RESET_TO_TEMPLATE_COOLDOWN: int = setting(
        600, "seconds a participant waits between two fresh starts of their VM (a new copy of the template)",
        "seconds, 0 to 604800", ge=0, le=604800)

    SCHEMA_LOCK_TIMEOUT: int = setting(
        600, "seconds the backend waits for another process's schema migration (a MariaDB lock) before it "
        "gives up and exits; it never migrates without the lock", "seconds, 1 to 86400", ge=1, le=86400)
    SCHEMA_WAIT_TIMEOUT: int = setting(
        120, "seconds a worker waits at start for the backend to migrate the schema", "seconds, 0 to 3600",
        ge=0, le=3600)

    # --- backend ----------------------------------------------------------------------------------
    BACKEND_HOST: str = setting("127.0.0.1", "address the HTTP API listens on", "an IP address or host name")
    BACKEND_PORT: int = setting(8000, "port the HTTP API listens on", "a TCP port, 1 to 65535", ge=1, le=65535)
    BACKEND_MIGRATE_ON_START: bool = setting(
        True, "the backend upgrades the database schema when it starts", "true or false")
    BACKEND_FORWARDED_ALLOW_IPS: str = setting(
        "127.0.0.1", "proxies whose X-Forwarded-For/-Proto the backend believes (the TLS reverse proxy)",
        "comma-separated IP addresses, or * behind a proxy that alone can reach the backend")
    PUBLIC_URL: str = setting(
        "http://127.0.0.1:8000", "where people reach the backend (links in emails: set your password)",
        "an http(s):// URL, e.g. https://labs.example.edu")
    DEV_MODE: bool = setting(
        False, "development conveniences: the demo-task endpoint (`openvle dev` turns it on)", "true or false")

    # --- accounts and the API -------------------------------------------------------------------
    SESSION_LIFETIME_HOURS: int = setting(
        12, "hours a browser login lasts", "hours, 1 to 720", ge=1, le=720)
    SESSION_COOKIE_SECURE: Literal["auto", "true", "false"] = setting(
        "auto", "send the session cookie over HTTPS only; auto = when the request came over HTTPS",
        "one of auto, true, false")
    LOGIN_MAX_FAILURES: int = setting(
        10, "failed logins of one account before it is refused for LOGIN_LOCKOUT_MINUTES (slowed from the 3rd)",
        "an integer from 3 to 1000", ge=3, le=1000)
    LOGIN_MAX_FAILURES_PER_ADDRESS: int = setting(
        100, "failed logins from one address (a classroom behind one NAT) before it is refused for a while",
        "an integer from 3 to 100000", ge=3, le=100000)
    LOGIN_LOCKOUT_MINUTES: int = setting(
        15, "minutes an account or address is refused after too many failed logins", "minutes, 1 to 1440",
        ge=1, le=1440)
    ACCOUNT_LINK_HOURS: int = setting(
        72, "hours a set-your-password link in an email stays valid", "hours, 1 to 720", ge=1, le=720)
    API_TOKEN_MAX_DAYS: int = setting(
        365, "longest lifetime of a personal API token (the default is 90 days or less)", "days, 1 to 3650",
        ge=1, le=3650)
    AUDIT_RETENTION_DAYS: int = setting(
        365, "days audit log entries are kept", "days, 1 to 3650", ge=1, le=3650)
    METRICS_TOKEN: SecretStr | None = setting(
        None, "bearer token Prometheus sends to /metrics; empty = /metrics is off", "a long random string")

    # --- credentials at rest --------------------------------------------------------------------
    SECRET_KEY: SecretStr | None = setting(
        None, "encrypts the credentials the database keeps (participants' Guacamole passwords); required unless "
        "the database is SQLite (then a key file beside it is made); keep it safe, without it they cannot be read",
        "at least 32 random characters: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    SECRET_KEY_PREVIOUS: SecretStr | None = setting(
        None, "older keys, still accepted for reading after SECRET_KEY changed; empty once "
        "`openvle secrets rotate` has re-encrypted everything under SECRET_KEY",
        "comma-separated keys, each at least 32 characters")

    # --- Proxmox VE -------------------------------------------------------------------------------
    PVE_HOST: str | None = setting(None, "Proxmox VE API host", "a host name or address")
    PVE_PORT: int = setting(8006, "Proxmox VE API port", "a TCP port, 1 to 65535", ge=1, le=65535)
    PVE_USER: str | None = setting(None, "Proxmox API user", "user@realm, e.g. openvle@pve")
    PVE_TOKEN_NAME: str | None = setting(None, "Proxmox API token id (the part after '!')", "a token id")
    PVE_TOKEN_VALUE: SecretStr | None = setting(None, "Proxmox API token secret", "the token's UUID secret")
    PVE_VERIFY_SSL: str = setting(
        "true", "check the Proxmox TLS certificate",
        "true, false, or the path of a CA bundle that signs the Proxmox certificate")
    PVE_TIMEOUT: int = setting(30, "seconds per Proxmox HTTP call", "seconds, 1 to 600", ge=1, le=600)
    PVE_VMID_RANGE: str = setting(
        "10000-19999", "VM ids this system allocates from (shared by all workers through Redis)",
        "two integers LOW-HIGH with 100 <= LOW < HIGH <= 999999999")
    PVE_NODES: str | None = setting(
        None, "nodes new VMs may be placed on; empty = every online node", "comma-separated node names")
    PVE_TAG: str = setting("openvle", "tag on every VM this system creates (orphan detection)",
                           "lowercase letters, digits, - _ . +")
    PVE_CLONE_CONCURRENCY: int = setting(
        2, "clones in flight at once per node, and per template", "an integer from 1 to 64", ge=1, le=64)
    PVE_CLONE_WATCHER: bool = setting(
        True, "run a clone watcher beside each clone worker: one task-list call per node frees a clone's slot "
        "the moment it ends and starts the next waiting clone (200 linked clones of 2 s: 1.08 x the hypervisor's "
        "limit instead of 1.83: README, Event benchmark); false leaves each clone to look back at its own task "
        "every PVE_POLL_INTERVAL",
        "true or false")
    PVE_CLONE_TIMEOUT: int = setting(
        3600, "seconds a Proxmox clone task may run before it counts as failed", "seconds, 60 to 86400",
        ge=60, le=86400)
    PVE_ACTION_TIMEOUT: int = setting(
        600, "seconds a start, stop, reset, delete or migrate task may run", "seconds, 10 to 86400",
        ge=10, le=86400)
    PVE_ACTION_WATCH: int = setting(
        10, "seconds a start, stop or reset that someone clicked is watched within its job (each look "
        "0.1 s apart) before the worker looks back every PVE_POLL_INTERVAL; 0 never watches",
        "seconds, 0 to 60", ge=0, le=60)
    PVE_POLL_INTERVAL: int = setting(
        3, "seconds between checks of a running Proxmox task (the worker is free meanwhile)",
        "seconds, 1 to 60", ge=1, le=60)
    NODE_METRICS_RETENTION_DAYS: int = setting(
        30, "days node metric documents stay in MongoDB (TTL index)", "days, 1 to 3650", ge=1, le=3650)

    # --- sandbox (simulators for development and tests) -------------------------------------
    SANDBOX_HOST: str = setting("127.0.0.1", "address the sandbox simulators listen on", "an IP address or host name")
    SANDBOX_PVE_PORT: int = setting(
        8006, "port of the Proxmox simulator (HTTPS)", "a TCP port, 1 to 65535", ge=1, le=65535)
    SANDBOX_DIR: str = setting(
        "var/sandbox", "directory where the sandbox writes its CA certificate for clients to trust",
        "a directory path")
    SANDBOX_SEED: bool = setting(
        True, "the sandbox starts seeded: Proxmox nodes and templates, a Moodle template course", "true or false")
    SANDBOX_GUACAMOLE_PORT: int = setting(
        8080, "port of the Guacamole simulator (HTTP, under /guacamole)", "a TCP port, 1 to 65535", ge=1, le=65535)
    SANDBOX_MOODLE_PORT: int = setting(
        8081, "port of the Moodle simulator (HTTP)", "a TCP port, 1 to 65535", ge=1, le=65535)
    SANDBOX_SMTP_PORT: int = setting(
        1025, "port of the sandbox mail catcher's SMTP server", "a TCP port, 1 to 65535", ge=1, le=65535)
    SANDBOX_MAIL_HTTP_PORT: int = setting(
        8025, "port where the mail catcher shows caught emails (HTTP)", "a TCP port, 1 to 65535", ge=1, le=65535)

    # --- Guacamole --------------------------------------------------------------------------------
    GUACAMOLE_URL: str | None = setting(
        None, "Guacamole base URL", "an http(s):// URL, e.g. https://guac.example/guacamole")
    GUACAMOLE_USER: str | None = setting(None, "Guacamole admin user", "a user name")
    GUACAMOLE_PASSWORD: SecretStr | None = setting(None, "Guacamole admin password", "a password")
    GUACAMOLE_VERIFY_SSL: str = setting(
        "true", "check Guacamole's TLS certificate (with an https:// GUACAMOLE_URL)",
        "true, false, or the path of a CA bundle that signs the Guacamole certificate")
    GUACAMOLE_TIMEOUT: int = setting(30, "seconds per Guacamole HTTP call", "seconds, 1 to 600", ge=1, le=600)
    GUACAMOLE_DATASOURCE: str = setting(
        "mysql", "Guacamole data source holding our objects", "e.g. mysql or postgresql")

    # --- Moodle -----------------------------------------------------------------------------------
    MOODLE_URL: str | None = setting(None, "Moodle site URL", "an http(s):// URL")
    MOODLE_TOKEN: SecretStr | None = setting(None, "Moodle web service token", "a token")
    MOODLE_VERIFY_SSL: str = setting(
        "true", "check Moodle's TLS certificate (with an https:// MOODLE_URL)",
        "true, false, or the path of a CA bundle that signs the Moodle certificate")
    MOODLE_TIMEOUT: int = setting(
        900, "seconds per Moodle call (course duplication runs a backup and restore inside the call)",
        "seconds, 5 to 7200", ge=5, le=7200)
    MOODLE_CATEGORY_ID: int = setting(1, "Moodle category the event courses are created in", "a category id", ge=1)
    MOODLE_STUDENT_ROLE_ID: int = setting(5, "Moodle role id participants are enrolled with", "a role id", ge=1)
    MOODLE_TEACHER_ROLE_ID: int = setting(3, "Moodle role id teachers are enrolled with", "a role id", ge=1)
    MOODLE_ARCHIVE_ACTION: Literal["hide", "delete", "keep"] = setting(
        "hide", "what archiving an event does to its course (keep also unenrols everyone)",
        "one of hide, delete, keep")

    # --- SMTP -------------------------------------------------------------------------------------
    SMTP_HOST: str = setting("localhost", "SMTP server", "a host name or address")
    SMTP_PORT: int = setting(25, "SMTP port", "a TCP port, 1 to 65535", ge=1, le=65535)
    SMTP_USER: str | None = setting(None, "SMTP user; empty = no authentication", "a user name")
    SMTP_PASSWORD: SecretStr | None = setting(None, "SMTP password", "a password")
    SMTP_TLS: Literal["none", "starttls", "ssl"] = setting(
        "starttls", "SMTP transport security: starttls (port 587 or 25), ssl (implicit TLS, port 465) or none",
        "one of none, starttls, ssl")
    SMTP_VERIFY_SSL: str = setting(
        "true", "check the SMTP server's TLS certificate",
        "true, false, or the path of a CA bundle that signs the SMTP server's certificate")
    SMTP_ALLOW_PLAIN_AUTH: bool = setting(
        False, "send SMTP_USER/SMTP_PASSWORD over an unencrypted connection (SMTP_TLS=none); only for a relay "
        "on a network you trust", "true or false")
    MAIL_FROM: str = setting("OpenVLE <noreply@localhost>", "From address of every email", "an address")
    SMTP_TIMEOUT: int = setting(30, "seconds per SMTP conversation", "seconds, 1 to 600", ge=1, le=600)
    ADMIN_EMAILS: str | None = setting(
        None, "who is emailed when a task fails for good; empty = nobody", "comma-separated email addresses")

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

    @field_validator("GUACAMOLE_URL", "MOODLE_URL", "PUBLIC_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("bad scheme")
        return value.rstrip("/") if value else value

    @field_validator("PVE_VMID_RANGE")
    @classmethod
    def _vmid_range(cls, value: str) -> str:
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
        if not match or not (100 <= int(match[1]) < int(match[2]) <= 999_999_999):
            raise ValueError("bad range")
        return f"{int(match[1])}-{int(match[2])}"

    @field_validator("PVE_TAG")
    @classmethod
    def _tag(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_][a-z0-9_+.-]*", value):
            raise ValueError("bad tag")
        return value

    @property
    def vmid_range(self) -> tuple[int, int]:
        low, high = self.PVE_VMID_RANGE.split("-")
        return int(low), int(high)

    @property
    def admin_emails(self) -> list[str]:
        return [a.strip() for a in (self.ADMIN_EMAILS or "").split(",") if a.strip()]

    @property
    def pve_nodes(self) -> list[str]:
        return [n.strip() for n in (self.PVE_NODES or "").split(",") if n.strip()]

    @field_validator("PVE_VERIFY_SSL", "GUACAMOLE_VERIFY_SSL", "MOODLE_VERIFY_SSL", "SMTP_VERIFY_SSL")
    @classmethod
    def _verify_ssl(cls, value: str) -> str:
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "false", "0", "no"):
            return "true" if lowered in ("true", "1", "yes") else "false"
        if not Path(value).is_file():
            raise ValueError("not a boolean and no such file")
        return value

    # --- helpers ----------------------------------------------------------------------------------
    def verify(self, name: str) -> bool | str:
        """A *_VERIFY_SSL setting as the clients take it: True, False or the path of a CA bundle."""
        value = getattr(self, name)
        return value == "true" if value in ("true", "false") else value

    def secrets(self) -> list[str]:
        """Every secret value set, for log masking."""
        values = [
            v.get_secret_value()
            for v in (self.PVE_TOKEN_VALUE, self.GUACAMOLE_PASSWORD, self.MOODLE_TOKEN, self.SMTP_PASSWORD,
                      self.METRICS_TOKEN, self.SECRET_KEY)
            if v is not None
        ]
        if self.SECRET_KEY_PREVIOUS is not None:
            values += [k.strip() for k in self.SECRET_KEY_PREVIOUS.get_secret_value().split(",")]
        for url in (self.REDIS_URL, self.DATABASE_URL, self.MONGO_URL):
            if url and urlsplit(url).password:
                values.append(urlsplit(url).password)
        return [v for v in values if len(v) >= 3]

    def queue_override(self, queue: str, what: str) -> int | None:
        return getattr(self, f"QUEUE_{queue.upper()}_{what}")

    def public_items(self) -> list[tuple[str, str]]:
        """(name, value) of every setting, secrets and URL passwords masked: for `openvle config`."""
        return [(name, shown(name, getattr(self, name))) for name in type(self).model_fields]


# The queue table (queues.py) adds QUEUE_<NAME>_TIMEOUT / _RESULT_TTL / _FAILURE_TTL per queue. Modules
# annotate with `Settings`: to a type checker it is the fields above (the per-queue ones are read
# through queue_override).
if TYPE_CHECKING:
    Settings = _Settings
else:
    Settings = create_model("Settings", __base__=_Settings, **_queue_overrides())


def load_settings() -> Settings:
    """Read and validate the environment; raise SettingsError with one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(error_lines(Settings, exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
