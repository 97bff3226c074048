"""Settings: defaults, validation at start, .env.example in step, secrets never shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import WAIT_SCALE
from openvle.settings import Settings, SettingsError, load_settings
from openvle.settings_help import COMPOSE_ONLY, TERMINAL

ROOT = Path(__file__).resolve().parents[1]


def run_openvle(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SERVICE_", "WORKER_", "QUEUE_"))}
    base.pop("REDIS_URL", None)
    base.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "openvle", *args], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60 * WAIT_SCALE)


def test_defaults_are_the_documented_ones(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.REDIS_URL == "redis://localhost:6379/0"
    assert settings.DATABASE_URL.startswith("sqlite:///")
    assert settings.MONGO_URL is None
    assert settings.WORKER_MAX_RETRY == 5
    assert settings.WORKER_PVE_PERIODIC_INTERVAL == 60
    assert settings.MAIL_MAX_AGE_WEEKS == 4
    assert settings.EVENTS_START_PREP_TIME_DAYS == 7
    assert settings.EVENTS_END_PREP_TIME_DAYS == 7
    assert settings.LOG_LEVEL == "INFO"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WORKER_MAX_RETRY", "abc", "invalid setting WORKER_MAX_RETRY='abc': expected an integer from 0 to 100"),
        ("WORKER_MAX_RETRY", "-1", "invalid setting WORKER_MAX_RETRY='-1': expected an integer from 0 to 100"),
        ("REDIS_URL", "localhost:6379", "invalid setting REDIS_URL='localhost:6379': expected a redis://"),
        ("DATABASE_URL", "postgresql://db/x",
         "invalid setting DATABASE_URL='postgresql://db/x': expected a SQLAlchemy"),
        ("MONGO_URL", "http://mongo", "invalid setting MONGO_URL='http://mongo': expected a mongodb:// URL"),
        ("LOG_LEVEL", "LOUD", "invalid setting LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR"),
        ("SMTP_TLS", "maybe", "invalid setting SMTP_TLS='maybe': expected one of none, starttls, ssl"),
        ("SMTP_VERIFY_SSL", "/no/such/ca.pem", "invalid setting SMTP_VERIFY_SSL='/no/such/ca.pem': expected true, "
         "false, or the path of a CA bundle"),
        ("GUACAMOLE_URL", "guac.example", "invalid setting GUACAMOLE_URL='guac.example': expected an http(s)://"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_clear_line(name, value, expected):
    result = run_openvle("run", "worker", **{name: value})

    assert result.returncode != 0
    assert result.stderr.startswith(f"openvle: {expected}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_a_bad_secret_is_not_echoed(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://openvle:hunter2@/nodb")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "hunter2" not in str(error.value)
    assert "DATABASE_URL" in str(error.value)


def test_mysql_urls_get_the_driver_the_image_ships(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@db/openvle")
    assert load_settings().DATABASE_URL == "mysql+pymysql://u:p@db/openvle"


def _example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.M))


def test_env_example_lists_every_setting_with_its_default():
    example = _example()
    fields = Settings.model_fields
    assert set(example) - set(COMPOSE_ONLY) - set(TERMINAL) == set(fields), \
        "run `openvle config --example > .env.example`"
    for name, field in fields.items():
        default = field.default
        if default is None or "Secret" in type(default).__name__:
            assert example[name] == "", name
        else:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert example[name] == shown, name


def test_every_variable_the_code_reads_from_the_environment_is_in_env_example():
    example = _example()
    read = set()
    for path in (ROOT / "services" / "openvle").rglob("*.py"):
        text = path.read_text()
        read |= set(re.findall(r"os\.environ\.get\(\"([A-Z][A-Z0-9_]*)\"", text))
        read |= set(re.findall(r"os\.environ\[\"([A-Z][A-Z0-9_]*)\"\](?!\s*=[^=])", text))  # not a write
        read |= set(re.findall(r"\"([A-Z][A-Z0-9_]*)\" (?:not )?in os\.environ", text))
    assert read and read <= set(example), f"read but not in .env.example: {sorted(read - set(example))}"


def test_every_setting_in_env_example_has_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert lines[index - 1].startswith("# "), f"{line} has no comment above it"


def test_config_masks_secrets_and_url_passwords():
    result = run_openvle(
        "config",
        PVE_TOKEN_VALUE="0f1e2d3c-secret-token",
        SMTP_PASSWORD="smtp-pass-42",
        DATABASE_URL="mysql+pymysql://openvle:db-pass-77@mariadb/openvle",
        REDIS_URL="redis://:redis-pass-9@redis:6379/0",
    )
    assert result.returncode == 0, result.stderr
    for secret in ("0f1e2d3c-secret-token", "smtp-pass-42", "db-pass-77", "redis-pass-9"):
        assert secret not in result.stdout
    assert "PVE_TOKEN_VALUE=********" in result.stdout
    assert "DATABASE_URL=mysql+pymysql://openvle:********@mariadb/openvle" in result.stdout
    assert "WORKER_MAX_RETRY=5" in result.stdout
