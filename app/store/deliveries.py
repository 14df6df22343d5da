"""Deliveries: one (event, endpoint) pair, its exact body, and every attempt made."""

from __future__ import annotations

import secrets
import time

from redis import Redis

from app.models import Delivery, Subscription
from app.store import script
from app.store.keys import (
    key_for_deliveries_due,
    key_for_deliveries_of,
    key_for_deliveries_pending,
    key_for_delivery,
    key_for_delivery_lock,
    key_for_subscription,
)

TTL = 90 * 86400
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def new_id() -> str:
    """Return a delivery id (RQ-safe characters)."""
    return "dlv_" + secrets.token_hex(10)


def create(r: Redis, *found: Delivery) -> None:
    """Write deliveries and mark them due now (before any job is enqueued for them).

    One transaction for all: a fan-out's records cost one round trip.
    """
    pipe = r.pipeline(transaction=True)
    for delivery in found:
        pipe.set(key_for_delivery(delivery.id), delivery.to_json(), ex=TTL)
        pipe.zadd(key_for_deliveries_pending(), {delivery.id: delivery.created_at})
        pipe.zadd(key_for_deliveries_due(), {delivery.id: delivery.created_at})
        if delivery.subscription_id:
            pipe.zadd(key_for_deliveries_of(delivery.subscription_id),
                      {delivery.id: delivery.created_at})
    pipe.execute()


def get(r: Redis, delivery_id: str) -> Delivery | None:
    """Return a delivery, or None."""
    raw = r.get(key_for_delivery(delivery_id)) if len(delivery_id) < 64 else None
    return Delivery.from_json(raw) if raw else None


_SAVE = script("""
-- Store a delivery's state with its sets in step; drop its lock if the token still holds it.
-- KEYS[1] delivery, KEYS[2] pending zset, KEYS[3] due zset, KEYS[4] lock, KEYS[5] (optional)
-- a record to read in the same step.
-- ARGV[1] json, ARGV[2] ttl, ARGV[3] id, ARGV[4] created at, ARGV[5] due ('' when not
-- pending), ARGV[6] lock token ('' keeps the lock).
-- Returns the value of KEYS[5] (nil when it has none), else 1.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[5] ~= '' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
    redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
else
    redis.call('ZREM', KEYS[2], ARGV[3])
    redis.call('ZREM', KEYS[3], ARGV[3])
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[4]) == ARGV[6] then
    redis.call('DEL', KEYS[4])
end
if KEYS[5] then return redis.call('GET', KEYS[5]) end
return 1
""")


def save(r: Redis, delivery: Delivery, *, due_at: float | None = None, release: str = "",
         subscription: bool = False) -> Subscription | None:
    """Store a delivery's state in one round trip; pending ones are due at ``due_at``
    (default next_attempt_at), others leave the sets.

    Args:
        release: a lease token: the lock is dropped in the same step if it still holds it.
        subscription: read the delivery's subscription in the same step (an attempt about
            to use it).

    Returns:
        The subscription as stored then, when asked for and there is one.
    """
    read = key_for_subscription(delivery.subscription_id) if subscription else ""
    due = ""
    if delivery.status == PENDING:
        due = repr(due_at if due_at is not None else delivery.next_attempt_at or time.time())
    keys = [key_for_delivery(delivery.id), key_for_deliveries_pending(),
            key_for_deliveries_due(), key_for_delivery_lock(delivery.id)]
    found = _SAVE([*keys, read] if read else keys,
                  [delivery.to_json(), TTL, delivery.id, repr(delivery.created_at), due, release],
                  r)
    return Subscription.from_json(found) if read and found not in (None, 1) else None


def forget(r: Redis, delivery_id: str) -> None:
    """Drop a delivery whose record has expired from the pending and due sets."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(key_for_deliveries_pending(), delivery_id)
    pipe.zrem(key_for_deliveries_due(), delivery_id)
    pipe.execute()


_LEASE = script("""
-- Take a delivery's attempt lock; while held, the delivery is due only when it runs out.
-- KEYS[1] lock, KEYS[2] due zset, KEYS[3] delivery
-- ARGV[1] token, ARGV[2] milliseconds, ARGV[3] due at, ARGV[4] delivery id
-- Returns nil when the lock is held, else the delivery's JSON ('' when it has none).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
return redis.call('GET', KEYS[3]) or ''
""")


def take(r: Redis, delivery_id: str, seconds: float) -> tuple[str | None, Delivery | None]:
    """Take the attempt lock of a delivery and read it, in one round trip.

    Returns:
        The lease token (None if another holds the lock: then no delivery either), and the
        delivery as read under the lock (None if it has none).

    The token is what :func:`release` needs: a holder whose lease ran out cannot drop the
    lock that someone else took since.
    """
    token = secrets.token_hex(16)
    raw = _LEASE([key_for_delivery_lock(delivery_id), key_for_deliveries_due(),
                  key_for_delivery(delivery_id)],
                 [token, int(seconds * 1000), repr(time.time() + seconds), delivery_id], r)
    if raw is None:
        return None, None
    return token, Delivery.from_json(raw) if raw else None


def lease(r: Redis, delivery_id: str, seconds: float) -> str | None:
    """Take the attempt lock of a delivery for ``seconds``; return its token, None if held."""
    return take(r, delivery_id, seconds)[0]


def hold(r: Redis, delivery_ids: list[str], until: float) -> None:
    """Make pending deliveries due only at ``until`` (a sender took them; one round trip)."""
    if delivery_ids:
        r.zadd(key_for_deliveries_due(), dict.fromkeys(delivery_ids, until), xx=True)


_RELEASE = script("""
-- Drop a lock if the token still holds it. KEYS[1] lock; ARGV[1] token. Returns 1 if dropped.
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
""")


def release(r: Redis, delivery_id: str, token: str) -> bool:
    """Drop the attempt lock if ``token`` still holds it (compare-and-delete, atomic)."""
    return bool(_RELEASE([key_for_delivery_lock(delivery_id)], [token], r))


def reopen(r: Redis, delivery_id: str, seconds: float = 10) -> Delivery | None:
    """Make a delivery pending and due now, under its lease; None while an attempt holds it."""
    token = lease(r, delivery_id, seconds)
    if token is None:
        return None
    try:
        delivery = get(r, delivery_id)
        if delivery is not None:
            delivery.status, delivery.next_attempt_at = PENDING, time.time()
            save(r, delivery)
        return delivery
    finally:
        release(r, delivery_id, token)


def overdue(r: Redis, before: float, limit: int = 500) -> list[str]:
    """Return pending deliveries whose next attempt (or lease) was due before ``before``."""
    return list(r.zrangebyscore(key_for_deliveries_due(), "-inf", before, start=0, num=limit))


def oldest_pending_age(r: Redis, now: float) -> float:
    """Return the age in seconds of the oldest pending delivery (0 when none)."""
    oldest = r.zrange(key_for_deliveries_pending(), 0, 0, withscores=True)
    return max(0.0, now - oldest[0][1]) if oldest else 0.0


def pending_count(r: Redis) -> int:
    """Return how many deliveries are pending."""
    return r.zcard(key_for_deliveries_pending())


def list_for_subscription(r: Redis, subscription_id: str, *, limit: int = 50,
                          since: float | None = None) -> list[Delivery]:
    """Return a subscription's deliveries, newest first (optionally only since a time)."""
    ids = r.zrevrangebyscore(key_for_deliveries_of(subscription_id), "+inf",
                             since if since is not None else "-inf", start=0, num=limit)
    return [d for d in (get(r, i) for i in ids) if d is not None]


def failed_for_subscription(r: Redis, subscription_id: str, since: float, *, limit: int,
                            scan: int, page: int = 50) -> tuple[list[Delivery], float | None]:
    """Return failed deliveries created since ``since``, oldest first, and where to go on.

    Ids are paged out of the subscription's set ``page`` at a time and only their records
    are read; the search stops after ``limit`` failures or ``scan`` records, whichever
    comes first.

    Returns:
        The failures found, and the creation time to pass as ``since`` to go on from the
        first delivery not looked at (None when every one since ``since`` was looked at).
    """
    key = key_for_deliveries_of(subscription_id)
    found: list[Delivery] = []
    seen = 0
    while True:
        ids = r.zrangebyscore(key, since, "+inf", start=seen, num=page, withscores=True)
        if not ids:
            return found, None
        records = r.mget([key_for_delivery(delivery_id) for delivery_id, _ in ids])
        for (_, score), raw in zip(ids, records, strict=True):
            if len(found) >= limit or seen >= scan:
                return found, score
            seen += 1
            delivery = Delivery.from_json(raw) if raw else None
            if delivery is not None and delivery.status == FAILED:
                found.append(delivery)
