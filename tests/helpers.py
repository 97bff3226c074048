"""Small readers shared by the tests."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from openvle.db.engine import session_scope
from openvle.db.models import Task


def load_task(task_id: int) -> Task:
    with session_scope() as session:
        return session.execute(
            select(Task).where(Task.id == task_id).options(selectinload(Task.subtasks), selectinload(Task.logs))
        ).scalar_one()


def task_status(task_id: int) -> str:
    with session_scope() as session:
        return session.execute(select(Task.status).where(Task.id == task_id)).scalar_one()


def settled(task_id: int) -> Task | None:
    task = load_task(task_id)
    return task if task.status in ("success", "error", "cancelled") else None


def account(username: str, role: str = "student", password: str | None = None) -> tuple[int, str]:
    """A user with an API token: (user id, token). Passwords cost an argon2 hash: only when asked."""
    from openvle.accounts.tokens import create_token
    from openvle.accounts.users import create_user

    user_id = create_user(username, f"{username}@uni.example", role, password=password)
    return user_id, create_token(user_id, "tests")[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin_client():
    """The API in this process, with an admin's token (as a script would call it)."""
    from fastapi.testclient import TestClient

    from openvle.backend.app import create_app

    _, token = account("ops", "admin")
    client = TestClient(create_app())
    client.headers.update(bearer(token))
    return client
