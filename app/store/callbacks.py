"""Received webhook callbacks: persisted raw, once per (provider request id, body)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from redis import Redis

from app.models import Callback
from app.store import script
from app.store.keys import key_for_callback, key_for_callbacks_pending, key_for_callbacks_unmatched

if TYPE_CHECKING:
    from app.queues import Writes

CALLBACK_TTL = 7 * 86400

# First writer wins, and writes everything at once: a crash can never leave a stub that
# would make every retry of the callback look like a duplicate, nor a callback stored with
# no settle job (the sweeper would settle it, but late).
_PERSIST = script("""
-- Store a callback unless it is stored already, mark it pending, and queue its settle job.
-- KEYS[1] callback hash, KEYS[2] pending zset; with a job: KEYS[3] its hash, KEYS[4] its
-- queue, KEYS[5] RQ's set of queues.
-- ARGV[1] ttl, ARGV[2] received at, ARGV[3] callback id, ARGV[4] n, ARGV[5..4+n] the
-- callback's field/value pairs; with a job: ARGV[5+n] its id, ARGV[6+n] its ttl (-1: none),
-- ARGV[7+n..] its field/value pairs.
-- Returns 1 when stored, 0 for a duplicate.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + n))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[3], unpack(ARGV, 7 + n))
    if tonumber(ARGV[6 + n]) > 0 then redis.call('EXPIRE', KEYS[3], ARGV[6 + n]) end
    redis.call('RPUSH', KEYS[4], ARGV[5 + n])
    redis.call('SADD', KEYS[5], KEYS[4])
end
return 1
""")


def callback_id(provider_request_id: str, body: bytes) -> str:
    """Return the dedupe id of a callback: hash of the provider's request id and the body."""
    digest = hashlib.sha256(provider_request_id.encode() + b"\n" + body).hexdigest()
    return "cb-" + digest[:40]


def persist(
    r: Redis, provider_request_id: str, body: bytes, headers: Mapping[str, str], source: str,
    request_id: str = "", job: Writes | None = None,
) -> tuple[str, bool]:
    """Store a verified callback; return (callback id, is_new). A duplicate changes nothing.

    ``job`` (``app.queues.settle_writes``) is the callback's settle job, queued in the same
    step when the callback is new: one round trip for both.
    """
    cid = callback_id(provider_request_id, body)
    now = time.time()
    record = Callback(id=cid, provider_request_id=provider_request_id,
                      body=body.decode("utf-8", "replace"), headers=dict(headers), source=source,
                      received_at=now, request_id=request_id)
    fields = [x for pair in record.to_redis().items() if pair[0] != "id" for x in pair]
    keys = [key_for_callback(cid), key_for_callbacks_pending()]
    args = [CALLBACK_TTL, repr(now), cid, len(fields), *fields]
    if job is not None:
        keys, args = [*keys, *job.keys], [*args, job.job_id, job.ttl, *job.fields]
    return cid, bool(_PERSIST(keys, args, r))


def get(r: Redis, cid: str) -> Callback | None:
    """Return a stored callback, or None."""
    raw = r.hgetall(key_for_callback(cid))
    if not raw or "body" not in raw:
        return None
    return Callback.from_redis({**raw, "id": cid})


def mark_settled(r: Redis, cid: str, outcome: str) -> None:
    """Record what settling did with a callback and drop it from the pending set."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(key_for_callback(cid), mapping={"settled": "1", "outcome": outcome})
    pipe.zrem(key_for_callbacks_pending(), cid)
    if outcome == "unmatched":
        pipe.zadd(key_for_callbacks_unmatched(), {cid: time.time()})
    pipe.execute()


def pending(r: Redis, older_than: float) -> list[str]:
    """Return callbacks received before ``older_than`` and not yet settled."""
    return list(r.zrangebyscore(key_for_callbacks_pending(), "-inf", older_than))


def unmatched(r: Redis, limit: int = 100) -> list[str]:
    """Return the newest callbacks whose request id we did not know."""
    return list(r.zrevrange(key_for_callbacks_unmatched(), 0, limit - 1))
