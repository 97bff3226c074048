"""Who may open the admin pages: a page a user's role does not reach does not exist for them (404,
as the API answers for objects they may not see), and is not in their navigation (render.NAV)."""

from __future__ import annotations

from fastapi import Depends

from openvle.accounts.identity import Actor
from openvle.backend.pages.access import page_actor
from openvle.errors import NotFound

NO_SUCH_PAGE = "there is no such page"


def admin_actor(actor: Actor = Depends(page_actor)) -> Actor:
    if not actor.is_admin:
        raise NotFound(NO_SUCH_PAGE)
    return actor


def teacher_actor(actor: Actor = Depends(page_actor)) -> Actor:
    if not actor.is_teacher:
        raise NotFound(NO_SUCH_PAGE)
    return actor
