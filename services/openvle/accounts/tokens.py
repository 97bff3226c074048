"""Personal API tokens for scripts: named, with an expiry, shown once, stored as a SHA-256, revocable."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from openvle.accounts.secrets import digest, new_token
from openvle.db.engine import session_scope
from openvle.db.models import ApiToken, User, utcnow
from openvle.errors import Invalid, NotFound
from openvle.settings import get_settings

DEFAULT_DAYS = 90


def create_token(user_id: int, name: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A new token for the user: (its row, the token itself, which is never stored or shown again)."""
    longest = get_settings().API_TOKEN_MAX_DAYS
    days = min(DEFAULT_DAYS, longest) if days is None else days
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("a token needs a name of 1 to 100 characters, e.g. the script that uses it")
    if not 1 <= days <= longest:
        raise Invalid(f"a token lives 1 to {longest} days (API_TOKEN_MAX_DAYS), not {days}")
    token = new_token("ovt")
    now = utcnow()
    with session_scope() as session:
        if session.get(User, user_id) is None:
            raise NotFound(f"user {user_id} does not exist")
        row = ApiToken(user_id=user_id, name=name, token_hash=digest(token), prefix=token[:10], created_at=now,
                       expires_at=now + dt.timedelta(days=days))
        session.add(row)
        session.flush()
        session.expunge(row)
    return row, token


def list_tokens(user_id: int) -> list[ApiToken]:
    with session_scope() as session:
        rows = list(session.execute(select(ApiToken).where(ApiToken.user_id == user_id)
                                    .order_by(ApiToken.id.desc())).scalars())
        for row in rows:
            session.expunge(row)
        return rows


def revoke_token(user_id: int, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (again is fine); NotFound for anyone else's."""
    with session_scope() as session:
        row = session.execute(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
                              ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"token {token_id} does not exist")
        if row.revoked_at is None:
            session.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=utcnow()))
            row.revoked_at = utcnow()
        session.expunge(row)
        return row
