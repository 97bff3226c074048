"""Browser sessions: a random token in an HttpOnly cookie; the database keeps its SHA-256 only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete

from openvle.accounts.secrets import digest, new_token
from openvle.db.engine import session_scope
from openvle.db.models import UserSession, utcnow
from openvle.settings import get_settings

COOKIE = "openvle_session"
CSRF_HEADER = "X-CSRF-Token"


def open_session(user_id: int, address: str | None) -> tuple[str, dt.datetime]:
    """A new session for the user: (the cookie's token, when it expires)."""
    token = new_token("ovs")
    now = utcnow()
    expires = now + dt.timedelta(hours=get_settings().SESSION_LIFETIME_HOURS)
    with session_scope() as session:
        session.add(UserSession(user_id=user_id, token_hash=digest(token), created_at=now, expires_at=expires,
                                last_seen_at=now, address=(address or "")[:64] or None))
    return token, expires


def close_session(token: str) -> None:
    with session_scope() as session:
        session.execute(delete(UserSession).where(UserSession.token_hash == digest(token)))


def close_all(user_id: int) -> None:
    """Log the user out everywhere (a new password, a deactivated account)."""
    with session_scope() as session:
        session.execute(delete(UserSession).where(UserSession.user_id == user_id))


def purge_expired() -> int:
    with session_scope() as session:
        return session.execute(delete(UserSession).where(UserSession.expires_at < utcnow())).rowcount
