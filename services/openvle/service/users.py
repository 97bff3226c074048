"""Accounts as users see them: logging in and out, one's own profile, password and tokens; and the
admins' user management. Secrets (passwords, hashes, tokens) are never in a view but the one
answer that hands out a new token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select

from openvle import authz
from openvle.accounts import identity, links, passwords, sessions, tokens
from openvle.accounts import users as accounts
from openvle.accounts.identity import Actor
from openvle.db.engine import session_scope
from openvle.db.models import AccountRole, User
from openvle.errors import Conflict, Invalid, NotFound
from openvle.service.views import NewTokenView, Page, TokenView, UserView


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: str = Field(min_length=1, max_length=100)
    email: str = Field(min_length=3, max_length=254)
    role: str = Field(AccountRole.STUDENT, description="student, teacher or admin")
    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)
    password: str | None = Field(None, max_length=256, description="empty: the user gets an email to choose one")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(None, min_length=3, max_length=254)
    role: str | None = None
    active: bool | None = Field(None, description="false: the user can no longer log in; their tokens stop")
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, description="what uses it, e.g. grading-script")
    days: int | None = Field(None, ge=1, le=3650, description="lifetime in days (default 90, at most "
                                                              "API_TOKEN_MAX_DAYS)")


def _view(user: User) -> UserView:
    return UserView.model_validate({**{k: getattr(user, k) for k in UserView.model_fields if k != "has_password"},
                                    "has_password": user.password_hash is not None})


def user_view(user_id: int) -> UserView:
    with session_scope() as session:
        user = session.get(User, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        return _view(user)


# --- one's own ----------------------------------------------------------------------------------------


def me(actor: Actor) -> UserView:
    if actor.user_id is None:
        raise NotFound("the command line has no account of its own")
    return user_view(actor.user_id)


def change_password(actor: Actor, current: str, new: str) -> None:
    with session_scope() as session:
        user = session.get(User, actor.user_id)
        stored = user.password_hash if user is not None else None
    if user is None or not passwords.verify(stored, current):
        raise Invalid("current_password: that is not your password")
    try:
        accounts.set_password(actor.user_id, new)
    except passwords.PasswordRejected as exc:
        raise Invalid(f"new_password: {exc}") from None


def my_tokens(actor: Actor, user_id: int | None = None) -> list[TokenView]:
    owner = _token_owner(actor, user_id)
    return [TokenView.model_validate(t) for t in tokens.list_tokens(owner)]


def create_token(actor: Actor, body: NewToken, user_id: int | None = None) -> NewTokenView:
    owner = _token_owner(actor, user_id)
    row, token = tokens.create_token(owner, body.name, body.days)
    return NewTokenView(**TokenView.model_validate(row).model_dump(), token=token)


def revoke_token(actor: Actor, token_id: int, user_id: int | None = None) -> TokenView:
    return TokenView.model_validate(tokens.revoke_token(_token_owner(actor, user_id), token_id))


def _token_owner(actor: Actor, user_id: int | None) -> int:
    if user_id is not None and user_id != actor.user_id:
        if not actor.is_admin:
            raise NotFound(f"user {user_id} does not exist")
        user_view(user_id)
        return user_id
    if actor.user_id is None:
        raise Invalid("the command line has no tokens of its own: name a user")
    return actor.user_id


# --- logging in -----------------------------------------------------------------------------------------


def login(login_name: str, password: str, address: str | None) -> tuple[Actor, str, object]:
    """(the actor, the session cookie's token, when it expires)."""
    actor = identity.login_with_password(login_name, password, address)
    token, expires = sessions.open_session(actor.user_id, address)
    return Actor(actor.user_id, actor.username, actor.role, "session", session_token=token), token, expires


def token_login(login_name: str, password: str, address: str | None, body: NewToken) -> tuple[Actor, NewTokenView]:
    """A password swapped for a new API token, for scripts that cannot keep a cookie."""
    actor = identity.login_with_password(login_name, password, address)
    return actor, create_token(actor, body)


def forgot_password(login_name: str) -> None:
    """Send a reset link if the account exists; the answer is the same either way."""
    user = accounts.find(login_name)
    if user is not None:
        links.send_link(user.id, links.RESET, requested_by=f"user:{user.username}")


def set_password_with_link(token: str, password: str) -> int:
    try:
        return links.use_link(token, password)
    except passwords.PasswordRejected as exc:
        raise Invalid(f"password: {exc}") from None


# --- admins' user management ----------------------------------------------------------------------------


def list_users(actor: Actor, role: str | None = None, q: str | None = None, before: int | None = None,
               limit: int = 100) -> Page[UserView]:
    authz.require_admin(actor, "list users")
    if role is not None:
        accounts.check_role(role)
    if not 1 <= limit <= 500:
        raise Invalid(f"limit must be 1 to 500, not {limit}")
    with session_scope() as session:
        query = select(User).order_by(User.id.desc()).limit(limit + 1)
        if role is not None:
            query = query.where(User.role == role)
        if q:
            like = f"%{q.strip().lower()}%"
            query = query.where(or_(func.lower(User.username).like(like), func.lower(User.email).like(like),
                                    func.lower(User.last_name).like(like)))
        if before is not None:
            query = query.where(User.id < before)
        rows = list(session.execute(query).scalars())
        items = [_view(u) for u in rows[:limit]]
    return Page[UserView](items=items, next_before=items[-1].id if len(rows) > limit else None)


def get_user(actor: Actor, user_id: int) -> UserView:
    if user_id != actor.user_id and not actor.is_admin:
        raise NotFound(f"user {user_id} does not exist")  # other people's accounts do not exist for them
    return user_view(user_id)


def create_user(actor: Actor, body: NewUser) -> UserView:
    authz.require_admin(actor, "create users")
    try:
        user_id = accounts.create_user(body.username, body.email, body.role, body.first_name, body.last_name,
                                       password=body.password)
    except passwords.PasswordRejected as exc:
        raise Invalid(f"password: {exc}") from None
    if body.password is None:
        links.send_link(user_id, links.INVITE, actor.requested_by)
    return user_view(user_id)


def update_user(actor: Actor, user_id: int, patch: UserPatch) -> UserView:
    authz.require_admin(actor, "change users")
    changes = patch.model_dump(exclude_unset=True)
    if user_id == actor.user_id and (changes.get("active") is False or changes.get("role") not in (None, "admin")):
        with session_scope() as session:
            admins = session.execute(select(func.count()).select_from(User).where(
                User.role == AccountRole.ADMIN, User.active.is_(True))).scalar_one()
        if admins <= 1:
            raise Conflict("you are the last active admin: make someone else admin first")
    accounts.update_user(user_id, **{k: v for k, v in changes.items() if v is not None})
    return user_view(user_id)


def send_link(actor: Actor, user_id: int) -> bool:
    """Email the user a link to choose a password (again); False when one went out moments ago."""
    authz.require_admin(actor, "send password links")
    view = user_view(user_id)
    if not view.active:
        raise Conflict(f"user {user_id} is switched off: switch them on first (active: true)")
    purpose = links.RESET if view.has_password else links.INVITE
    return links.send_link(user_id, purpose, actor.requested_by) is not None
