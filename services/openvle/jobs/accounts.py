"""Account emails (mails queue): the set-password link of an invite or a reset."""

from __future__ import annotations

from sqlalchemy import select

from openvle.accounts import links
from openvle.context import TaskContext
from openvle.db.engine import session_scope
from openvle.db.models import AccountLink, Email, User
from openvle.errors import PermanentError
from openvle.jobs.mail import deliver
from openvle.mail import store_email
from openvle.settings import get_settings

KIND = {links.INVITE: "account_invite", links.RESET: "password_reset"}


def send_link(ctx: TaskContext, link_id: int) -> dict:
    settings = get_settings()
    with session_scope() as session:
        link = session.get(AccountLink, link_id)
        if link is None:
            raise PermanentError(f"account link {link_id} does not exist")
        if link.used_at is not None:
            return {"link_id": link_id, "skipped": "already used"}
        user = session.get(User, link.user_id)
        kind = KIND[link.purpose]
        # One email row per Task, found again on a retry; it keeps a placeholder, never the link.
        email_id = session.execute(select(Email.id).where(Email.kind == kind, Email.task_id == ctx.task_id)).scalar()
        if email_id is None:
            email_id = store_email(session, kind, user.email, {
                "user": {"full_name": user.full_name, "username": user.username}, "link": links.PLACEHOLDER,
                "hours": settings.ACCOUNT_LINK_HOURS, "site": settings.PUBLIC_URL}, user_id=user.id,
                task_id=ctx.task_id)

    minted: dict[str, str] = {}

    def fill(body: str) -> str:  # called for the text and the HTML: one token for both
        if "url" not in minted:
            token = links.mint(link_id)
            if token is None:
                raise PermanentError("the link was used or expired before its email went out")
            minted["url"] = links.url(token)
        return body.replace(links.PLACEHOLDER, minted["url"])

    return deliver(ctx, email_id, fill=fill)
