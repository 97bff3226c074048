"""Accounts over HTTP: one's own (/api/me) and the admins' user management (/api/users)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from openvle.accounts.identity import Actor
from openvle.backend.auth import current_actor
from openvle.backend.common import ERRORS, Id, audit_as
from openvle.service import users
from openvle.service.users import NewToken, NewUser, UserPatch
from openvle.service.views import Message, NewTokenView, Page, TokenView, UserView

me = APIRouter(prefix="/api/me", tags=["me"], responses=ERRORS, dependencies=[Depends(current_actor)])
admin = APIRouter(prefix="/api/users", tags=["users"], responses=ERRORS, dependencies=[Depends(current_actor)])


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


@me.get("", name="me.get", response_model=UserView, summary="The caller's account")
def get_me(actor: Actor = Depends(current_actor)) -> UserView:
    return users.me(actor)


@me.post("/password", name="me.password", response_model=Message,
         summary="Change one's password (every session ends: log in again)")
def change_password(body: PasswordChange, actor: Actor = Depends(current_actor)) -> Message:
    users.change_password(actor, body.current_password, body.new_password)
    return Message(message="password changed: every session of yours has ended, log in again")


@me.get("/tokens", name="me.tokens", response_model=list[TokenView], summary="The caller's API tokens")
def my_tokens(actor: Actor = Depends(current_actor)) -> list[TokenView]:
    return users.my_tokens(actor)


@me.post("/tokens", name="me.create_token", status_code=201, response_model=NewTokenView,
         summary="A new API token (the answer is the only time it is shown)")
def create_token(body: NewToken, request: Request, actor: Actor = Depends(current_actor)) -> NewTokenView:
    made = users.create_token(actor, body)
    audit_as(request, "token", made.id, detail=made.name)
    return made


@me.delete("/tokens/{token_id}", name="me.revoke_token", response_model=TokenView, summary="Revoke a token")
def revoke_token(token_id: Id, actor: Actor = Depends(current_actor)) -> TokenView:
    return users.revoke_token(actor, token_id)


@admin.get("", name="users.list", response_model=Page[UserView], summary="Admins: accounts, newest first")
def list_users(role: str | None = Query(None, max_length=16, description="student, teacher or admin"),
               q: str | None = Query(None, max_length=100, description="part of a user name, email or last name"),
               before: int | None = Query(None, ge=1, le=2**31 - 1), limit: int = Query(100, ge=1, le=500),
               actor: Actor = Depends(current_actor)) -> Page[UserView]:
    return users.list_users(actor, role, q, before, limit)


@admin.post("", name="users.create", status_code=201, response_model=UserView,
            summary="Admins: a new account (without a password the user is emailed a link to choose one)")
def create_user(body: NewUser, request: Request, actor: Actor = Depends(current_actor)) -> UserView:
    made = users.create_user(actor, body)
    audit_as(request, "user", made.id, detail=f"{made.username} ({made.role})")
    return made


@admin.get("/{user_id}", name="users.get", response_model=UserView, summary="Admins (or oneself): an account")
def get_user(user_id: Id, actor: Actor = Depends(current_actor)) -> UserView:
    return users.get_user(actor, user_id)


@admin.patch("/{user_id}", name="users.update", response_model=UserView,
             summary="Admins: change role, email, names, or switch an account off (active: false)")
def update_user(user_id: Id, patch: UserPatch, request: Request, actor: Actor = Depends(current_actor)) -> UserView:
    audit_as(request, "user", user_id, detail=", ".join(f"{k}={v}" for k, v in patch.model_dump(
        exclude_unset=True).items() if k in ("role", "active")) or None)
    return users.update_user(actor, user_id, patch)


@admin.post("/{user_id}/password-link", name="users.send_link", status_code=202, response_model=Message,
            summary="Admins: email the user a link to choose a password")
def send_link(user_id: Id, actor: Actor = Depends(current_actor)) -> Message:
    sent = users.send_link(actor, user_id)
    return Message(message="a link is on its way" if sent else "a link went out moments ago: not sent again")


@admin.get("/{user_id}/tokens", name="users.tokens", response_model=list[TokenView],
           summary="Admins: someone's API tokens")
def user_tokens(user_id: Id, actor: Actor = Depends(current_actor)) -> list[TokenView]:
    return users.my_tokens(actor, user_id)


@admin.delete("/{user_id}/tokens/{token_id}", name="users.revoke_token", response_model=TokenView,
              summary="Admins: revoke someone's token")
def revoke_user_token(user_id: Id, token_id: Id, actor: Actor = Depends(current_actor)) -> TokenView:
    return users.revoke_token(actor, token_id, user_id)
