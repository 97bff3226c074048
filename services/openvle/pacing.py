"""Clone pacing: at most PVE_CLONE_CONCURRENCY clones in flight per node and per template.

Real clusters answer a burst of clones with storage lock timeouts; pacing keeps the burst within
what the storage takes. Slots live in Redis sorted sets shared by every worker: member = VM row id,
score = when the claim lapses. A holder refreshes its claim on every check, so the slot of a worker
that died frees itself after SLOT_TTL seconds.
"""

from __future__ import annotations

import time

from openvle.connections import get_redis

SLOT_TTL = 120  # seconds a claim lasts without being refreshed

# Atomically: drop lapsed claims, then claim a slot in both sets if both have room (or refresh it).
_ACQUIRE = """
local now, ttl, limit, member = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for _, key in ipairs(KEYS) do redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
local holds = true
for _, key in ipairs(KEYS) do
  if not redis.call('ZSCORE', key, member) then holds = false end
end
if not holds then
  for _, key in ipairs(KEYS) do
    if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= limit then return 0 end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, member)
  redis.call('EXPIRE', key, ttl * 2)
end
return 1
"""


def _keys(node: str, template_id: int) -> list[str]:
    return [f"openvle:clone-slots:node:{node}", f"openvle:clone-slots:template:{template_id}"]


def acquire(node: str, template_id: int, vm_id: int, limit: int) -> bool:
    """Claim (or refresh) a clone slot for VM row `vm_id`; False when the node or template is full."""
    script = get_redis().register_script(_ACQUIRE)
    return bool(script(keys=_keys(node, template_id), args=[time.time(), SLOT_TTL, limit, vm_id]))


def release(node: str, template_id: int, vm_id: int) -> None:
    redis = get_redis()
    for key in _keys(node, template_id):
        redis.zrem(key, vm_id)


def in_flight(node: str) -> int:
    redis = get_redis()
    key = _keys(node, 0)[0]
    redis.zremrangebyscore(key, "-inf", time.time())
    return int(redis.zcard(key))
