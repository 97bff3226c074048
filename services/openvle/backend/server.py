"""The backend role: upgrade the schema (or check it), then serve the API with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from openvle import stores
from openvle.backend.app import create_app
from openvle.db.engine import get_engine
from openvle.db.schema import upgrade, wait_until_current
from openvle.operations import load_jobs
from openvle.settings import Settings

log = logging.getLogger("openvle.backend")


def run(settings: Settings) -> int:
    load_jobs()
    engine = get_engine()
    stores.wait_for_database(engine)  # said once, and once that it is back; Redis is asked per request
    if settings.BACKEND_MIGRATE_ON_START:
        before, after = upgrade(engine)
        log.info("database schema %s", f"upgraded {before or 'empty'} -> {after}" if before != after else f"at {after}")
    else:
        wait_until_current(engine, timeout=0)
    # Behind the TLS proxy, X-Forwarded-For/-Proto from BACKEND_FORWARDED_ALLOW_IPS give the real client
    # (audit log, login throttling) and the scheme (the session cookie's Secure flag).
    uvicorn.run(create_app(), host=settings.BACKEND_HOST, port=settings.BACKEND_PORT, log_config=None,
                access_log=True, proxy_headers=True, forwarded_allow_ips=settings.BACKEND_FORWARDED_ALLOW_IPS)
    return 0
