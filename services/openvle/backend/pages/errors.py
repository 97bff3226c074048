"""Errors on pages: the API's sentence (what is wrong, how to fix it) on a page of its own, with the
same status; a missing login sends the browser to /login."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from openvle.backend.pages.access import is_htmx, login_url
from openvle.backend.pages.render import render

TITLES = {400: "Cannot do that", 401: "Please log in", 403: "Not allowed", 404: "Not found",
          409: "Not now", 422: "Please check what you entered", 429: "Too many tries",
          500: "Something went wrong", 503: "Try again shortly"}


def error_page(request: Request, status: int, message: str) -> Response:
    actor = getattr(request.state, "actor", None)
    title = TITLES.get(status, "Cannot do that")
    if is_htmx(request):  # a button's request: the message goes where the page shows errors
        return render(request, "_flash.html", actor, status=status, headers={"HX-Retarget": "#flash",
                                                                             "HX-Reswap": "innerHTML"},
                      title=title, message=message)
    return render(request, "error.html", actor, status=status, title=title, message=message)


def to_login(request: Request, next_path: str) -> Response:
    target = login_url(next_path)
    if is_htmx(request):  # htmx would swap the login page into a fragment: make it navigate instead
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
