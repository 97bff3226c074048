"""Accounts: make them, change their role or password, switch them off. Callers check who may."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import or_, select

from openvle.accounts import passwords, sessions
from openvle.db.engine import session_scope
from openvle.db.models import AccountRole, User, utcnow
from openvle.errors import Conflict, Invalid, NotFound

USERNAME = re.compile(r"[a-z0-9._@-]{1,100}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise Invalid(f"user name {username!r}: use 1 to 100 lower-case letters, digits and . _ @ -")
    return name


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise Invalid(f"{email!r} is not an email address (write it as name@example.org)")
    return email


def check_role(role: str) -> str:
    if role not in AccountRole.ALL:
        raise Invalid(f"role {role!r}: use one of {', '.join(AccountRole.ALL)}")
    return role


def create_user(username: str, email: str, role: str = AccountRole.STUDENT, first_name: str = "",
                last_name: str = "", password: str | None = None) -> int:
    name, email, role = check_username(username), check_email(email), check_role(role)
    if password is not None:
        passwords.check_new(password, name)
    with session_scope() as session:
        taken = session.execute(select(User.username, User.email).where(
            or_(User.username == name, User.email == email))).first()
        if taken is not None:
            what = f"user name {name!r}" if taken.username == name else f"email {email!r}"
            raise Conflict(f"{what} already has an account: change that one instead")
        user = User(username=name, email=email, role=role, first_name=first_name or name, last_name=last_name,
                    password_hash=passwords.hash_password(password) if password else None,
                    password_changed_at=utcnow() if password else None, active=True)
        session.add(user)
        session.flush()
        return user.id


def generated_password() -> str:
    return secrets.token_urlsafe(15)


def set_password(user_id: int, password: str) -> None:
    """Set a new password and end every session of the user (a stolen one included)."""
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        passwords.check_new(password, user.username)
        user.password_hash = passwords.hash_password(password)
        user.password_changed_at = utcnow()
    sessions.close_all(user_id)


def update_user(user_id: int, *, role: str | None = None, active: bool | None = None, email: str | None = None,
                first_name: str | None = None, last_name: str | None = None) -> None:
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        if email is not None and check_email(email) != user.email:
            if session.execute(select(User.id).where(User.email == email)).first() is not None:
                raise Conflict(f"email {email!r} already has an account")
            user.email = email
        if role is not None:
            user.role = check_role(role)
        if first_name is not None:
            user.first_name = first_name
        if last_name is not None:
            user.last_name = last_name
        if active is not None:
            user.active = active
    if active is False:
        sessions.close_all(user_id)


def find(login: str) -> User | None:
    with session_scope() as session:
        return session.execute(select(User).where(
            or_(User.username == login.strip().lower(), User.email == login.strip()))).scalars().first()
