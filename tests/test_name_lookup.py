"""A store's host name that fails to resolve "for now" (EAI_AGAIN, as podman's DNS answers while it
reloads when a container starts) is looked up again, so a command run at that moment still works;
a name that does not exist is reported at once. The stores are real (MariaDB, Redis); only the
resolver's answers are the test's, for one made-up host name."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from helpers import account
from openvle.connections import redis_from_url
from openvle.db.engine import build_engine

HOST = "flaky-store.openvle-test"


class Resolver:
    """getaddrinfo that answers `error` for HOST the first `failures` times, then as for 127.0.0.1."""

    def __init__(self, monkeypatch, failures: int, error: int = socket.EAI_AGAIN):
        self.failures, self.error, self.asked = failures, error, 0
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host, *args, **kwargs):
        if host != HOST:
            return self._real(host, *args, **kwargs)
        self.asked += 1
        if self.asked <= self.failures:
            raise socket.gaierror(self.error, "Temporary failure in name resolution"
                                  if self.error == socket.EAI_AGAIN else "Name or service not known")
        return self._real("127.0.0.1", *args, **kwargs)


def _mariadb_url(clean) -> str:
    if clean.kind != "real":
        pytest.skip("the embedded database is a file: no host name to look up")
    return make_url(clean.database_url).set(host=HOST).render_as_string(hide_password=False)


def _redis_url(clean) -> str:
    if not clean.redis_url.startswith("redis://"):
        pytest.skip("the embedded Redis is a unix socket: no host name to look up")
    return clean.redis_url.replace("127.0.0.1", HOST).replace("localhost", HOST)


def test_the_database_is_reached_when_its_name_resolves_on_the_third_try(clean, monkeypatch):
    engine = build_engine(_mariadb_url(clean))
    resolver = Resolver(monkeypatch, failures=2)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert resolver.asked == 3
    engine.dispose()


def test_a_database_name_that_does_not_exist_is_reported_at_once(clean, monkeypatch):
    engine = build_engine(_mariadb_url(clean))
    resolver = Resolver(monkeypatch, failures=99, error=socket.EAI_NONAME)
    began = time.monotonic()
    with pytest.raises(OperationalError, match="Name or service not known"):
        engine.connect()
    assert resolver.asked == 1
    assert time.monotonic() - began < 5  # not the 10 s a "try again" would be given
    engine.dispose()


def test_redis_is_reached_when_its_name_resolves_on_the_third_try(clean, monkeypatch):
    redis = redis_from_url(_redis_url(clean))
    resolver = Resolver(monkeypatch, failures=2)
    assert redis.ping()
    assert resolver.asked == 3
    redis.close()


def test_a_redis_name_that_does_not_exist_is_reported_at_once(clean, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    redis = redis_from_url(_redis_url(clean))
    resolver = Resolver(monkeypatch, failures=99, error=socket.EAI_NONAME)
    with pytest.raises(RedisConnectionError, match="Name or service not known"):
        redis.ping()
    assert resolver.asked == 1
    redis.close()


def test_a_cli_command_run_while_the_name_fails_for_now_does_its_work(clean, settings_env, monkeypatch, capsys):
    """What failed in the compose test: `openvle event ...` in the backend's container as
    worker-vm-clone started again, with the database's name unresolvable for a moment."""
    from openvle.cli import main

    account("flaky-ann", "teacher")
    settings_env(DATABASE_URL=_mariadb_url(clean), REDIS_URL=_redis_url(clean))
    resolver = Resolver(monkeypatch, failures=3)
    assert main(["user", "list"]) == 0
    assert "flaky-ann" in capsys.readouterr().out
    assert resolver.asked == 4
