"""Auth tokens and their sessions (HashTokenSessionMap): 64 upper-case hex digits, evicted after
`ttl` seconds without use (Guacamole's api-session-timeout; every authenticated request counts as use)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Session:
    token: str
    user_key: str  # fold(username) of the logged-in user
    created: float
    last_access: float


class TokenStore:
    """Not locked itself: GuacamoleState calls it with its lock held."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def issue(self, user_key: str) -> Session:
        now = self.clock()
        token = secrets.token_hex(32).upper()  # SecureRandomAuthTokenGenerator: 256 random bits as hex
        session = Session(token, user_key, now, now)
        self._sessions[token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token`, touched; None when unknown or idle for too long."""
        if not token:
            return None
        self.prune()
        session = self._sessions.get(token)
        if session is not None:
            session.last_access = self.clock()
        return session

    def revoke(self, token: str | None) -> bool:
        self.prune()
        return token is not None and self._sessions.pop(token, None) is not None

    def revoke_user(self, user_key: str) -> None:
        for token in [t for t, s in self._sessions.items() if s.user_key == user_key]:
            del self._sessions[token]

    def expire_all(self) -> int:
        count = len(self._sessions)
        self._sessions.clear()
        return count

    def prune(self) -> None:
        # Real Guacamole evicts once a minute; evicting at each look-up gives the same answers, deterministically.
        deadline = self.clock() - self.ttl
        for token in [t for t, s in self._sessions.items() if s.last_access <= deadline]:
            del self._sessions[token]

    def count(self) -> int:
        self.prune()
        return len(self._sessions)

    def clear(self) -> None:
        self._sessions.clear()
