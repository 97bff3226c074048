"""A user's Guacamole password: generated once, kept only encrypted, put into an email only as it is sent.

The stored email keeps PLACEHOLDER where the password goes; `filler(user_id)` is handed to
`jobs.mail.deliver`, which completes the text just before the SMTP conversation. So neither the
users table nor a stored email body (kept MAIL_MAX_AGE_WEEKS, failed ones for good) holds it in clear.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import select, update

from openvle import credentials
from openvle.db.engine import session_scope
from openvle.db.models import User
from openvle.errors import PermanentError

PLACEHOLDER = "@@OPENVLE-GUACAMOLE-PASSWORD@@"  # survives HTML escaping: no & < > " '


def ensure(user_id: int) -> str:
    """The user's password, made and stored (encrypted) on first use. Two workers provisioning the
    same teacher at once agree: only the first write lands, and both return what was stored."""
    current = reveal(user_id)
    if current is not None:
        return current
    sealed = credentials.encrypt(secrets.token_urlsafe(12))
    with session_scope() as session:
        session.execute(update(User).where(User.id == user_id, User.guacamole_password_encrypted.is_(None))
                        .values(guacamole_password_encrypted=sealed))
    stored = reveal(user_id)
    if stored is None:
        raise PermanentError(f"user {user_id} does not exist")
    return stored


def reveal(user_id: int) -> str | None:
    with session_scope() as session:
        sealed = session.execute(select(User.guacamole_password_encrypted).where(User.id == user_id)).scalar()
    return credentials.decrypt(sealed) if sealed else None


def filler(user_id: int) -> Callable[[str], str]:
    """For `deliver(..., fill=)`: puts the user's password where the stored email has PLACEHOLDER."""

    def fill(body: str) -> str:
        if PLACEHOLDER not in body:
            return body
        password = reveal(user_id)
        if password is None:
            raise PermanentError(f"user {user_id} has no Guacamole password any more: provision their access again")
        return body.replace(PLACEHOLDER, password)

    return fill


def rotate_all(batch: int = 500) -> int:
    """Re-encrypt every stored password under the current SECRET_KEY (`openvle secrets rotate`);
    afterwards SECRET_KEY_PREVIOUS is no longer needed. Returns how many were re-encrypted."""
    done, after = 0, 0
    while True:
        with session_scope() as session:
            rows = session.execute(
                select(User.id, User.guacamole_password_encrypted)
                .where(User.id > after, User.guacamole_password_encrypted.is_not(None))
                .order_by(User.id).limit(batch)).all()
            for user_id, sealed in rows:
                session.execute(update(User).where(User.id == user_id)
                                .values(guacamole_password_encrypted=credentials.reencrypt(sealed)))
        if not rows:
            return done
        done += len(rows)
        after = rows[-1][0]
