"""Admission control: per-key submit rates (a token bucket) and how fast the queue drains."""

from __future__ import annotations

import time

from redis import Redis

from app.store import script
from app.store.keys import PREFIX

_TAKE = script("""
-- Take one token from a key's bucket, refilled at a steady rate up to its burst.
-- KEYS[1] the bucket hash (tokens, at)
-- ARGV[1] rate (tokens per second), ARGV[2] burst, ARGV[3] now (s)
-- Returns {1, 0} when a token was taken, {0, seconds until one is there} when none is.
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then tokens = tokens - 1; taken = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
if taken == 1 then return {1, '0'} end
return {0, tostring((1 - tokens) / rate)}
""")

DRAIN_WINDOW = 60
"""Seconds over which the drain rate is measured."""


def key_for_bucket(key_id: str) -> str:
    """Hash: one API key's submit token bucket."""
    return f"{PREFIX}:rate:{key_id}"


def key_for_drained(second: int) -> str:
    """Counter of requests that left the queue in one second (kept two windows)."""
    return f"{PREFIX}:drained:{second}"


def take_token(r: Redis, key_id: str, rate: float, burst: int,
               now: float | None = None) -> float:
    """Take a submit token for a key; return 0 when taken, else seconds until one is there."""
    taken, wait = _TAKE([key_for_bucket(key_id)],
                        [rate, burst, repr(time.time() if now is None else now)], r)
    return 0.0 if taken else float(wait)


def note_drained(r: Redis, now: float | None = None) -> None:
    """Count one request leaving the queue (it started, or ended while queued)."""
    second = int(time.time() if now is None else now)
    pipe = r.pipeline(transaction=False)
    pipe.incr(key_for_drained(second))
    pipe.expire(key_for_drained(second), DRAIN_WINDOW * 2)
    pipe.execute()


def drain_rate(r: Redis, now: float | None = None) -> float:
    """Return requests per second that left the queue over the last DRAIN_WINDOW seconds."""
    second = int(time.time() if now is None else now)
    counts = r.mget([key_for_drained(s) for s in range(second - DRAIN_WINDOW, second)])
    return sum(int(c) for c in counts if c) / DRAIN_WINDOW
