"""Clone pacing: at most PVE_CLONE_CONCURRENCY clones in flight per node and per template.

Real clusters answer a burst of clones with storage lock timeouts; pacing keeps the burst within
what the storage takes. Slots live in Redis sorted sets shared by every worker: member = VM row id,
score = when the claim lapses. A holder refreshes its claim on every check, so the slot of a worker
that died frees itself after SLOT_TTL seconds.

A clone that finds no free slot joins a line of waiters (oldest first) and checks back by itself
only after WAIT_FALLBACK seconds; whoever releases a slot wakes the oldest waiter that now fits, by moving its
scheduled RQ job to the front of its queue. So 200 waiting clones cost no polling, and a freed slot
is taken by the next clone job the worker runs. A waiter that is already placed leaves its clone
call in the line too (WAITER_STARTS): the clone watcher makes that call itself the moment a slot
frees (clone_watch), so the slot does not sit idle while a job is dequeued, forked and loaded.
Whoever makes a clone call holds the VM's start (START_HOLD) meanwhile, and a deletion forbids it
for good, so a clone is never started twice nor after its VM was deleted.

The clone time of each template is learned (EWMA over finished clones), so a running clone is first
looked at when it should be done rather than every PVE_POLL_INTERVAL; only from clones whose end a
look saw about when it was planned, never from time nobody was looking (a worker killed, an outage).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from openvle.connections import get_redis
from openvle.wake import run_job_now, run_now

log = logging.getLogger("openvle.pacing")

SLOT_TTL = 120  # seconds a claim lasts without being refreshed
# A waiter also looks by itself this often: a slot whose holder died lapses (SLOT_TTL) without a
# release to wake anyone, and the periodic reconcile wakes waiters for such slots sooner.
WAIT_FALLBACK = 300
WAITERS = "openvle:clone-slot-waiters"  # sorted set: RQ job id -> when it started waiting
WAITER_KEYS = "openvle:clone-slot-waiter-keys"  # hash: RQ job id -> "node|template id|limit"
WAITER_STARTS = "openvle:clone-slot-waiter-starts"  # hash: RQ job id -> its clone call (JSON), when placed
WAKE_SCAN = 100  # oldest waiters looked at per release
START_HOLD = "openvle:clone-start:vm:{}"  # who is making the clone call of VM row {} ("deleting": nobody)
START_HOLD_SECONDS = 30  # a holder that died lets go after this
STARTED = "openvle:clone-started:vm:{}"  # the UPID of a clone the watcher started, until its job records it
DELETING = "deleting"
CLONE_SECONDS = "openvle:clone-seconds:template:{}"
SEEN_RUNNING = "openvle:clone-seen-running:vm:{}"
EWMA_WEIGHT = 0.3
SEEN_LATE = 0.75  # a clone first seen already done ended before that look: count 3/4 of its age
# A look this much later than planned means nobody was looking meanwhile (a worker killed, a store
# away); a busy clone worker's looks come a few seconds late, which still teaches.
LATE_LOOK = 10
LOOKS_KEPT = 86400  # seconds the last look at a clone is kept (a full clone may run for hours)

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


def refresh(node: str, template_id: int, vm_id: int) -> None:
    """Keep an existing claim alive (the clone watcher, for a clone it saw running); claims nothing new."""
    with get_redis().pipeline() as pipe:
        for key in _keys(node, template_id):
            pipe.zadd(key, {vm_id: time.time() + SLOT_TTL}, xx=True)
        pipe.execute()


def release(node: str, template_id: int, vm_id: int, wake: bool = True) -> None:
    """Give the slot back and (`wake`) wake the oldest waiting clone that fits now; the clone watcher
    starts the next clone itself instead."""
    redis = get_redis()
    removed = 0
    for key in _keys(node, template_id):
        removed += redis.zrem(key, vm_id)
    if removed and wake:
        wake_next()


def wait_for_slot(job_id: str, node: str, template_id: int, limit: int, start: dict | None = None) -> None:
    """Join the line; a job woken before that found no slot after all keeps its place. `start`: the
    placed clone's call ({"vm_id", "clone": Proxmox.clone's arguments}), for the watcher to make."""
    redis = get_redis()
    known = redis.hget(WAITER_KEYS, job_id)
    since = float(known.decode().rsplit("|", 1)[1]) if known else time.time()
    with redis.pipeline() as pipe:
        pipe.zadd(WAITERS, {job_id: since})
        pipe.hset(WAITER_KEYS, job_id, f"{node}|{template_id}|{limit}|{since}")
        if start is not None:
            pipe.hset(WAITER_STARTS, job_id, json.dumps(start))
        else:
            pipe.hdel(WAITER_STARTS, job_id)
        for key in (WAITERS, WAITER_KEYS, WAITER_STARTS):  # entries of jobs that vanished go with an idle day
            pipe.expire(key, 86400)
        pipe.execute()


def stop_waiting(job_id: str) -> None:
    redis = get_redis()
    with redis.pipeline() as pipe:
        pipe.zrem(WAITERS, job_id)
        pipe.hdel(WAITER_KEYS, job_id)
        pipe.hdel(WAITER_STARTS, job_id)
        pipe.execute()


@dataclass(frozen=True)
class Waiter:
    job_id: str
    node: str
    template_id: int
    limit: int
    start: dict | None  # the placed clone's call, or None (not placed yet)

    @property
    def slots(self) -> list[str]:
        return _keys(self.node, self.template_id)


def waiters(most: int = WAKE_SCAN) -> list[Waiter]:
    """The oldest `most` waiters, in line order (three reads, whatever their number)."""
    redis = get_redis()
    ids = [raw.decode() for raw in redis.zrange(WAITERS, 0, most - 1)]
    if not ids:
        return []
    found = []
    for job_id, keys, start in zip(ids, redis.hmget(WAITER_KEYS, ids), redis.hmget(WAITER_STARTS, ids), strict=True):
        if keys is None:
            continue  # half left (its job stops waiting just now)
        node, template_id, limit, _ = keys.decode().rsplit("|", 3)
        found.append(Waiter(job_id, node, int(template_id), int(limit), json.loads(start) if start else None))
    return found


def claimed(keys: list[str]) -> int:
    """Claims held in the fullest of these slot sets (lapsed claims do not count)."""
    redis, now = get_redis(), time.time()
    return max(int(redis.zcount(key, now, "+inf")) for key in keys)


# Compare-and-delete: let go of a hold only while it is still the holder's.
_LET_GO = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def hold_start(vm_id: int, holder: str) -> bool | None:
    """Hold the clone call of VM row `vm_id`: True when held (or already ours), False while another
    holder makes it, None when its deletion forbade it."""
    redis = get_redis()
    key = START_HOLD.format(vm_id)
    if redis.set(key, holder, nx=True, ex=START_HOLD_SECONDS):
        return True
    current = redis.get(key)
    if current == DELETING.encode():
        return None
    return current == holder.encode()


def let_go_start(vm_id: int, holder: str) -> None:
    get_redis().eval(_LET_GO, 1, START_HOLD.format(vm_id), holder)


def forbid_start(vm_id: int) -> bool:
    """Its VM is being deleted: no clone of it starts from now on. False while a clone call of it is
    being made (look again in a moment: then its clone is there to delete)."""
    redis = get_redis()
    key = START_HOLD.format(vm_id)
    redis.set(key, DELETING, nx=True, ex=LOOKS_KEPT)
    return redis.get(key) == DELETING.encode()


def started_by_watcher(vm_id: int, upid: str | None = None) -> str | None:
    """Record (with `upid`) or read the UPID of a clone the watcher started for VM row `vm_id`."""
    key = STARTED.format(vm_id)
    if upid is not None:
        get_redis().set(key, upid, ex=LOOKS_KEPT)
        return upid
    value = get_redis().get(key)
    return value.decode() if value is not None else None


def clear_started(vm_id: int) -> None:
    """Its job recorded the UPID in the VM row: the row is where it lives from now on."""
    get_redis().delete(STARTED.format(vm_id))


def wake_waiters(most: int = 100) -> int:
    """Wake one waiter per free slot (for slots freed by lapsing, which nobody releases)."""
    woken: dict[str, int] = {}  # slot set -> waiters woken for it that have not claimed yet
    count = 0
    while count < most and wake_next(woken) is not None:
        count += 1
    return count


def _fits(redis, keys: list[str], limit: int, now: float, woken: dict[str, int]) -> bool:
    return all(redis.zcount(key, now, "+inf") + woken.get(key, 0) < limit for key in keys)


def wake_next(woken: dict[str, int] | None = None) -> str | None:
    """Move the oldest waiter that would get a slot now to the front of its RQ queue.

    Waiters whose job is gone or no longer waits (finished, failed, cancelled) leave the line; one
    still between its check and its check-back is passed over this time (its fallback covers it).
    The woken job leaves the line until it runs; finding no slot after all, it rejoins in its place.
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    redis = get_redis()
    now = time.time()
    for raw in redis.zrange(WAITERS, 0, WAKE_SCAN - 1):
        job_id = raw.decode()
        keys = redis.hget(WAITER_KEYS, job_id)
        try:
            job = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:
            job = None
        if job is None or keys is None or job.get_status(refresh=False) in ("finished", "failed", "canceled",
                                                                             "stopped"):
            stop_waiting(job_id)
            continue
        node, template_id, limit, _ = keys.decode().rsplit("|", 3)
        slots = _keys(node, int(template_id))
        if not _fits(redis, slots, int(limit), now, woken or {}):
            continue
        if not move_to_queue(redis, job):
            continue  # still between its check and its check-back (or the scheduler just took it)
        if woken is not None:
            for key in slots:
                woken[key] = woken.get(key, 0) + 1
        log.debug("woke clone job %s for a free slot on %s", job_id, node)
        return job_id
    return None


def move_to_queue(redis, job, at_front: bool = True) -> bool:
    """Out of the schedule onto its queue (wake.run_now) and out of the line of waiters, in one Redis
    transaction. False when it is not (or no longer) in the schedule."""
    return run_now(redis, job, at_front, also=lambda pipe: pipe.zrem(WAITERS, job.id))


def wake_waiter(job_id: str) -> bool:
    """A waiter's job to the front of its queue now (move_to_queue, by id)."""
    return run_job_now(get_redis(), job_id, also=lambda pipe: pipe.zrem(WAITERS, job_id))


def in_flight(node: str) -> int:
    redis = get_redis()
    key = _keys(node, 0)[0]
    redis.zremrangebyscore(key, "-inf", time.time())
    return int(redis.zcard(key))


def expected_clone_seconds(template_id: int) -> float | None:
    """How long clones of this template lately took (None before the first one finished)."""
    value = get_redis().get(CLONE_SECONDS.format(template_id))
    return float(value) if value is not None else None


def clone_started(vm_id: int, next_look_in: float) -> None:
    """The clone of VM row `vm_id` was started just now; the first look is planned `next_look_in` s on."""
    get_redis().set(SEEN_RUNNING.format(vm_id), f"-|{next_look_in:.3f}", ex=LOOKS_KEPT)


def seen_running(vm_id: int, age: float, next_look_in: float) -> None:
    """A look found the clone of VM row `vm_id` still running `age` seconds after it started; the
    next look is planned `next_look_in` s on."""
    get_redis().set(SEEN_RUNNING.format(vm_id), f"{age:.3f}|{next_look_in:.3f}", ex=LOOKS_KEPT)


def learn_clone_seconds(template_id: int, vm_id: int, done_age: float) -> bool:
    """Fold a finished clone into the template's estimate (True), unless nobody was looking when it
    ended. It ended between the last look that saw it running and the one that saw it done: the
    midpoint. Without a running look, it ended some time before it was seen done: guess lower
    (SEEN_LATE), so the estimate does not creep up. But when the look that saw it done came more
    than LATE_LOOK s after it was planned (the worker was killed or restarted, Redis or the database
    was away), the clone ended some time in a gap nobody watched: it teaches nothing (learned, an
    outage would make the next clones be looked at only long after they are done)."""
    redis = get_redis()
    looked = redis.getdel(SEEN_RUNNING.format(vm_id))
    if looked is None:
        return False  # its start was not seen by this system (a clone adopted after a crash)
    running, planned = looked.decode().split("|")
    last_look = 0.0 if running == "-" else float(running)
    if done_age - last_look > float(planned) + LATE_LOOK:
        log.info("clone of VM row %s seen done %.0fs after the look before (planned: %.0fs): not learned",
                 vm_id, done_age - last_look, float(planned))
        return False
    sample = (last_look + done_age) / 2 if running != "-" else SEEN_LATE * done_age
    if sample <= 0:
        return False  # the node's clock is behind ours: nothing to learn
    key = CLONE_SECONDS.format(template_id)
    old = redis.get(key)
    new = sample if old is None else (1 - EWMA_WEIGHT) * float(old) + EWMA_WEIGHT * sample
    redis.set(key, f"{new:.3f}", ex=7 * 86400)
    return True
