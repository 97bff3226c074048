"""The in-memory Guacamole database plus the session map: one lock, the objects, tokens, faults, and the
admin operations tests use (reset, snapshot, set_faults, expire_tokens, configure)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..faults import EveryNth
from . import views
from .model import (
    ADMIN_SELF_PERMISSIONS,
    ADMIN_SYSTEM_PERMISSIONS,
    Connection,
    ConnectionGroup,
    Faults,
    SharingProfile,
    User,
    fold,
    id_order,
)
from .tokens import TokenStore


@dataclass
class FaultDecision:
    drop: bool = False
    latency: float = 0.0
    error: bool = False


class GuacamoleState:
    def __init__(self, *, username: str = "guacadmin", password: str = "guacadmin", data_source: str = "mysql",
                 token_ttl: float = 3600.0, seed: int | None = None, clock: Callable[[], float] = time.monotonic):
        if not username:
            raise ValueError("the admin username must not be empty")
        self.lock = threading.RLock()
        self.admin_username = username
        self.admin_password = password
        self.data_source = data_source
        self._initial_ttl = _non_negative("token_ttl", token_ttl)
        self._initial_seed = seed
        self.tokens = TokenStore(self._initial_ttl, clock)
        self.reset()

    @property
    def shared_data_source(self) -> str:
        # every JDBC extension registers a "-shared" twin for connection-sharing links
        return self.data_source + "-shared"

    # ---- admin ------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh database (guacadmin only, as the schema scripts leave it), no sessions, no faults."""
        with self.lock:
            admin = User(self.admin_username, self.admin_password)
            admin.permissions.system.update(ADMIN_SYSTEM_PERMISSIONS)
            admin.permissions.grant("userPermissions", admin.username, ADMIN_SELF_PERMISSIONS)
            self.users: dict[str, User] = {admin.key: admin}
            self.connections: dict[str, Connection] = {}
            self.groups: dict[str, ConnectionGroup] = {}
            self.profiles: dict[str, SharingProfile] = {}
            self._seq = {"connection": 0, "group": 0, "profile": 0}  # AUTO_INCREMENT: ids are never reused
            self.tokens.clear()
            self.tokens.ttl = self._initial_ttl
            self.faults = Faults(seed=self._initial_seed)
            self.rng = random.Random(self._initial_seed)
            self.error_plan = EveryNth()

    def configure(self, token_ttl: float | None = None) -> dict[str, Any]:
        with self.lock:
            if token_ttl is not None:
                self.tokens.ttl = _non_negative("token_ttl", token_ttl)
            return self.config()

    def config(self) -> dict[str, Any]:
        return {"token_ttl": self.tokens.ttl, "data_source": self.data_source, "admin_username": self.admin_username}

    def set_faults(self, error_rate: float | None = None, latency: float | None = None,
                   drop_rate: float | None = None, seed: int | None = None,
                   error_every: int | None = None) -> dict[str, Any]:
        with self.lock:
            f = self.faults
            if error_every is not None:
                f.error_every = self.error_plan.set(error_every)
            if latency is not None:
                f.latency = _non_negative("latency", latency)
            if error_rate is not None:
                f.error_rate = _rate("error_rate", error_rate)
            if drop_rate is not None:
                f.drop_rate = _rate("drop_rate", drop_rate)
            if seed is not None:
                f.seed = int(seed)
                self.rng = random.Random(f.seed)
            return f.as_dict()

    def expire_tokens(self) -> int:
        """Every session ends at once, as if api-session-timeout had passed; returns how many there were."""
        with self.lock:
            return self.tokens.expire_all()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "dataSource": self.data_source,
                "users": [views.user_record(u) for u in self.users.values()],
                "connections": [views.connection_record(c) for c in _by_id(self.connections)],
                "connectionGroups": [views.group_json(g) for g in _by_id(self.groups)],
                "sharingProfiles": [views.profile_record(p) for p in _by_id(self.profiles)],
                "permissions": {u.username: views.permission_set(u.permissions) for u in self.users.values()},
                "tokens": self.tokens.count(),
                "faults": self.faults.as_dict(),
                "config": self.config(),
            }

    # ---- used by the API (lock held) --------------------------------------------------------------------------
    def decide_faults(self) -> FaultDecision:
        """Draw this request's injected faults (seedable, so a run can be replayed)."""
        with self.lock:
            f = self.faults
            decision = FaultDecision(latency=f.latency)
            if f.drop_rate > 0 and self.rng.random() < f.drop_rate:
                decision.drop = True
            elif self.error_plan.hit() or (f.error_rate > 0 and self.rng.random() < f.error_rate):
                decision.error = True
            return decision

    def next_id(self, table: str) -> str:
        self._seq[table] += 1
        return str(self._seq[table])

    def user(self, name: str | None) -> User | None:
        return self.users.get(fold(name)) if name is not None else None

    def now_ms(self) -> int:
        return int(time.time() * 1000)


def _by_id(table: dict[str, Any]) -> list[Any]:
    return [table[k] for k in sorted(table, key=id_order)]


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def _rate(name: str, value: float) -> float:
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be within 0..1")
    return value
