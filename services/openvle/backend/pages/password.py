"""Choosing a password with an emailed link. It works without JavaScript (a plain form); the token in
the link is what proves who it is for. Errors stand beside the field; the link is kept."""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from openvle.backend.common import audit_as
from openvle.backend.pages.access import PageRoute
from openvle.backend.pages.forms import FormState
from openvle.backend.pages.render import render
from openvle.errors import RequestError
from openvle.service import users

router = APIRouter(route_class=PageRoute, include_in_schema=False)
TITLE = "Choose your password"
# The link's token must not travel on to other sites in a Referer header.
NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def _page(request: Request, token: str, form: FormState | None = None, status: int = 200, done: bool = False):
    return render(request, "password.html", None, status=status, headers=NO_REFERRER, title=TITLE, token=token,
                  form=form or FormState(), done=done)


@router.get("/set-password", name="pages.set_password_form")
def set_password_form(request: Request, token: str = Query("", max_length=200)) -> Response:
    if not token:
        return _page(request, "", FormState(error="This page needs the link from your email."), 400)
    return _page(request, token)


@router.post("/set-password", name="pages.set_password")
def set_password(request: Request, token: str = Form("", max_length=200), password: str = Form("", max_length=256),
                 again: str = Form("", max_length=256)) -> Response:
    form = FormState()
    if password != again:
        form.errors["again"] = "The two passwords differ: type the same one twice."
        return _page(request, token, form, 422)
    try:
        user_id = users.set_password_with_link(token, password)
    except RequestError as exc:
        form.add_error(exc, ("password",))
        return _page(request, token, form, exc.status)
    audit_as(request, "user", user_id, detail="password set with an emailed link")
    return _page(request, token, done=True)
