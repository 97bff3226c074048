"""One-time links that set a password: the first one of a new account (invite) or a new one (reset).

The link's token is made when its email is sent (jobs/accounts.py) and only its SHA-256 is kept; the
stored email holds a placeholder, so no usable link sits in the database. A link works once, for
ACCOUNT_LINK_HOURS; asking again within a few minutes does not send another.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update

from openvle.accounts import sessions
from openvle.accounts.passwords import check_new, hash_password
from openvle.accounts.secrets import digest, new_token
from openvle.db.engine import session_scope
from openvle.db.models import AccountLink, User, utcnow
from openvle.enqueue import enqueue_operation
from openvle.errors import Invalid
from openvle.settings import get_settings

INVITE, RESET = "invite", "reset"
RESEND_AFTER = dt.timedelta(minutes=5)
PLACEHOLDER = "@@OPENVLE-ONE-TIME-LINK@@"


def send_link(user_id: int, purpose: str, requested_by: str) -> int | None:
    """Queue the email with a set-password link; None when one went out moments ago (or the user
    is switched off). Returns the link's id."""
    now = utcnow()
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            return None
        recent = session.execute(select(AccountLink.id).where(
            AccountLink.user_id == user_id, AccountLink.used_at.is_(None), AccountLink.expires_at > now,
            AccountLink.created_at > now - RESEND_AFTER)).first()
        if recent is not None:
            return None
        link = AccountLink(user_id=user_id, purpose=purpose, created_at=now,
                           expires_at=now + dt.timedelta(hours=get_settings().ACCOUNT_LINK_HOURS))
        session.add(link)
        session.flush()
        link_id = link.id
    enqueue_operation("accounts.send_link", {"link_id": link_id}, target=f"user:{user_id}", requested_by=requested_by)
    return link_id


def invite_if_new(user_ids: list[int], requested_by: str) -> list[int]:
    """Invite the accounts that have no password yet and no invite under way; returns who was invited."""
    if not user_ids:
        return []
    now = utcnow()
    with session_scope() as session:
        waiting = set(session.execute(select(AccountLink.user_id).where(
            AccountLink.user_id.in_(user_ids), AccountLink.used_at.is_(None), AccountLink.expires_at > now)).scalars())
        fresh = list(session.execute(select(User.id).where(
            User.id.in_(user_ids), User.password_hash.is_(None), User.active.is_(True))).scalars())
    invited = [uid for uid in fresh if uid not in waiting]
    for uid in invited:
        send_link(uid, INVITE, requested_by)
    return invited


def mint(link_id: int) -> str | None:
    """Make the link's token now (replacing an earlier one that was never delivered); None when
    the link was used or expired meanwhile."""
    token = new_token("ovl")
    with session_scope() as session:
        changed = session.execute(update(AccountLink).where(
            AccountLink.id == link_id, AccountLink.used_at.is_(None), AccountLink.expires_at > utcnow()
        ).values(token_hash=digest(token))).rowcount
    return token if changed else None


def url(token: str) -> str:
    return f"{get_settings().PUBLIC_URL}/set-password?token={token}"


def use_link(token: str, password: str) -> int:
    """Set the password a link was sent for; the link and every other open link of the user die."""
    now = utcnow()
    with session_scope() as session:
        link = session.execute(select(AccountLink).where(AccountLink.token_hash == digest(token))).scalar_one_or_none()
        if link is None or link.used_at is not None or link.expires_at <= now:
            raise Invalid("this link is unknown, used or expired: ask for a new one (forgot password)")
        user = session.get(User, link.user_id)
        if user is None or not user.active:
            raise Invalid("this link is unknown, used or expired: ask for a new one (forgot password)")
        check_new(password, user.username)
        user.password_hash = hash_password(password)
        user.password_changed_at = now
        session.execute(update(AccountLink).where(AccountLink.user_id == user.id, AccountLink.used_at.is_(None))
                        .values(used_at=now))
        user_id = user.id
    sessions.close_all(user_id)
    return user_id


def purge_expired() -> int:
    """Links used or expired more than a day ago: nobody needs them any more."""
    cutoff = utcnow() - dt.timedelta(days=1)
    with session_scope() as session:
        return session.execute(delete(AccountLink).where(
            or_(AccountLink.expires_at < cutoff, AccountLink.used_at < cutoff))).rowcount
