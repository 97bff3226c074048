"""The one seam between a credential and the system: whoever asks becomes an `Actor`.

Today: a password (login), a browser session (cookie) or a personal API token (Bearer). Single
sign-on later adds one function here (OIDC claims -> the user with that email), nothing else.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import or_, select, update

from openvle.accounts import passwords, throttle
from openvle.accounts.secrets import digest
from openvle.db.engine import session_scope
from openvle.db.models import AccountRole, ApiToken, User, UserSession, utcnow

log = logging.getLogger("openvle.accounts")

TOUCH_EVERY = dt.timedelta(minutes=1)  # last-used times are kept to the minute: one write, not one per request


@dataclass(frozen=True)
class Actor:
    """Who is asking, and how they proved it (session, token or cli)."""

    user_id: int | None
    username: str
    role: str
    via: str
    session_token: str | None = field(default=None, repr=False)  # a browser session's, for its CSRF token

    @property
    def is_admin(self) -> bool:
        return self.role == AccountRole.ADMIN

    @property
    def is_teacher(self) -> bool:
        return self.role in (AccountRole.TEACHER, AccountRole.ADMIN)

    @property
    def requested_by(self) -> str:
        """What Tasks record as their requester: the real user."""
        return f"{'cli' if self.via == 'cli' else 'user'}:{self.username}"


def cli_actor(login: str) -> Actor:
    """Whoever runs `openvle` on the server: they can read the database anyway, so they act as admin."""
    return Actor(user_id=None, username=login, role=AccountRole.ADMIN, via="cli")


class LoginFailed(Exception):
    def __init__(self) -> None:
        # Never which of the two was wrong: the answer must not tell whether the account exists.
        super().__init__("wrong user name or password")


def login_with_password(login: str, password: str, address: str | None) -> Actor:
    """The user behind a user name (or email) and password; raises LoginFailed or throttle.Refused."""
    throttle.check(login, address)
    name = login.strip().lower()
    with session_scope() as session:
        user = session.execute(
            select(User).where(or_(User.username == name, User.email == login.strip()))
        ).scalars().first()
        matches = passwords.verify(user.password_hash if user is not None else None, password)
        if user is None or not matches or not user.active:
            throttle.failed(login, address)
            raise LoginFailed()
        user.last_login_at = utcnow()
        if passwords.needs_rehash(user.password_hash):
            user.password_hash = passwords.hash_password(password)
        actor = Actor(user.id, user.username, user.role, "session")
    throttle.succeeded(login)
    return actor


def account_named(login: str) -> int | None:
    """The id of the account a login names, if any (for the audit log of a failed login)."""
    with session_scope() as session:
        return session.execute(
            select(User.id).where(or_(User.username == login.strip().lower(), User.email == login.strip()))
        ).scalars().first()


def from_token(token: str) -> Actor | None:
    """The owner of a live API token, or None (unknown, expired, revoked, or its user deactivated)."""
    now = utcnow()
    with session_scope() as session:
        row = session.execute(
            select(ApiToken.id, ApiToken.expires_at, ApiToken.revoked_at, ApiToken.last_used_at, User.id.label("uid"),
                   User.username, User.role, User.active)
            .join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest(token))
        ).first()
        if row is None or row.revoked_at is not None or row.expires_at <= now or not row.active:
            return None
        if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
            session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return Actor(row.uid, row.username, row.role, "token")


def from_session(token: str) -> Actor | None:
    """The user of a live browser session, or None (unknown, expired, logged out, deactivated)."""
    now = utcnow()
    with session_scope() as session:
        row = session.execute(
            select(UserSession.id, UserSession.expires_at, UserSession.last_seen_at, User.id.label("uid"),
                   User.username, User.role, User.active)
            .join(User, User.id == UserSession.user_id).where(UserSession.token_hash == digest(token))
        ).first()
        if row is None or row.expires_at <= now or not row.active:
            return None
        if now - row.last_seen_at > TOUCH_EVERY:
            session.execute(update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now))
    return Actor(row.uid, row.username, row.role, "session", session_token=token)
