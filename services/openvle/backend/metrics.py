"""GET /metrics (Prometheus text format): off unless METRICS_TOKEN is set; then Prometheus sends it as
a Bearer token (`authorization: {credentials: …}` in its scrape config)."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openvle.accounts.secrets import same
from openvle.errors import NotFound, Unauthenticated
from openvle.service.prometheus import registry
from openvle.settings import get_settings

router = APIRouter()


@functools.cache
def _registry():
    return registry()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    token = get_settings().METRICS_TOKEN
    if token is None:
        raise NotFound("/metrics is off: set METRICS_TOKEN to turn it on")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same(given.strip(), token.get_secret_value()):
        raise Unauthenticated("send Authorization: Bearer <METRICS_TOKEN>")
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
