"""The one page the API itself serves: choose a password with an emailed link. It works without
JavaScript (a plain form); the token in the link is what proves who it is for."""

from __future__ import annotations

import html

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from openvle.backend.common import audit_as
from openvle.errors import RequestError
from openvle.service import users

router = APIRouter(include_in_schema=False)

STYLE = ("body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#222}"
         "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;font-size:1rem}"
         "button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem}.error{color:#a00}.ok{color:#070}")


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
                        f"content='width=device-width'><title>OpenVLE: choose a password</title><style>{STYLE}</style>"
                        f"</head><body><h1>Choose your password</h1>{body}</body></html>", status_code=status,
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _form(token: str, error: str | None = None) -> str:
    shown = f"<p class=error>{html.escape(error)}</p>" if error else ""
    return (f"{shown}<form method=post action=/set-password><input type=hidden name=token "
            f"value='{html.escape(token, quote=True)}'><label for=p1>New password (at least 10 characters)</label>"
            "<input id=p1 name=password type=password autocomplete=new-password required minlength=10>"
            "<label for=p2>The same again</label><input id=p2 name=again type=password autocomplete=new-password "
            "required><button type=submit>Set password</button></form>")


@router.get("/set-password", name="pages.set_password_form")
def set_password_form(token: str = Query("", max_length=200)) -> HTMLResponse:
    if not token:
        return _page("<p class=error>This page needs the link from your email.</p>", 400)
    return _page(_form(token))


@router.post("/set-password", name="pages.set_password")
def set_password(request: Request, token: str = Form("", max_length=200), password: str = Form("", max_length=256),
                 again: str = Form("", max_length=256)) -> HTMLResponse:
    if password != again:
        return _page(_form(token, "The two passwords differ: type the same one twice."), 422)
    try:
        user_id = users.set_password_with_link(token, password)
    except RequestError as exc:
        return _page(_form(token, str(exc)), exc.status)
    audit_as(request, "user", user_id, detail="password set with an emailed link")
    return _page("<p class=ok>Your password is set. You can log in now.</p>")
