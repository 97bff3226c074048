"""The process-wide Redis connection (redis-py's pool notices forks and reconnects by itself)."""

from __future__ import annotations

import functools

from redis import Redis

from openvle.name_lookup import redis_retry


@functools.lru_cache(maxsize=4)
def redis_from_url(url: str) -> Redis:
    return Redis.from_url(url, health_check_interval=30, socket_connect_timeout=5, retry=redis_retry())


def get_redis() -> Redis:
    from openvle.settings import get_settings

    return redis_from_url(get_settings().REDIS_URL)
