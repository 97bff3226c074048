"""Node metric history in MongoDB (optional: MONGO_URL unset means none is kept).

One document per node per sync; an index on (node, time) for charts and a TTL index on time so
MongoDB itself drops documents older than NODE_METRICS_RETENTION_DAYS.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from typing import Any

import pymongo

from openvle.settings import get_settings

COLLECTION = "node_metrics"

# pymongo.MongoClient in production; the metrics test swaps in mongomock's (no server runs there).
client_factory: Callable[..., Any] = pymongo.MongoClient


class MetricsStore:
    def __init__(self, url: str, retention_days: int):
        self._client = client_factory(url, serverSelectionTimeoutMS=5000, tz_aware=True)
        self._collection = self._client.get_default_database("openvle")[COLLECTION]
        self._collection.create_index([("node", pymongo.ASCENDING), ("time", pymongo.DESCENDING)])
        # Re-created with the new lifetime when NODE_METRICS_RETENTION_DAYS changes.
        ttl = retention_days * 86400
        existing = {i["name"]: i for i in self._collection.list_indexes()}
        if existing.get("time_ttl", {}).get("expireAfterSeconds") not in (None, ttl):
            self._collection.drop_index("time_ttl")
        self._collection.create_index("time", name="time_ttl", expireAfterSeconds=ttl)

    def record(self, documents: list[dict[str, Any]]) -> int:
        if not documents:
            return 0
        return len(self._collection.insert_many(documents).inserted_ids)

    def history(self, node: str, since: dt.datetime) -> list[dict[str, Any]]:
        cursor = self._collection.find({"node": node, "time": {"$gte": since}}, {"_id": 0}).sort("time", 1)
        return list(cursor)


@functools.lru_cache(maxsize=2)
def _store(url: str, retention_days: int, pid: int) -> MetricsStore:
    return MetricsStore(url, retention_days)


def get_metrics_store() -> MetricsStore | None:
    settings = get_settings()
    if not settings.MONGO_URL:
        return None
    return _store(settings.MONGO_URL, settings.NODE_METRICS_RETENTION_DAYS, os.getpid())
