"""An attempt's start in one round trip, for a delivery read ahead of its lease.

A fan-out job reads its deliveries once, all in one round trip, when it hands them to the
sender (:func:`hold_and_read`). When a lane comes to one, :func:`start` takes its lease and,
if the record is still what was read, writes it with the attempt logged ``in_progress`` and
reads its subscription, all in one script: one round trip where the lease and the log took
two. If the record changed meanwhile (a redeliver, a sweep), nothing is written and the
caller gets it as it is now, under the lease, to go on the usual way.
"""

from __future__ import annotations

import hashlib
import secrets

from redis import Redis

from app.models import Delivery, Subscription
from app.store import script
from app.store.deliveries import TTL
from app.store.keys import (
    key_for_deliveries_due,
    key_for_deliveries_pending,
    key_for_delivery,
    key_for_delivery_lock,
    key_for_subscription,
)

_START = script("""
-- Take a delivery's lease; if it is as read, store it with its attempt logged, in one step.
-- KEYS[1] lock, KEYS[2] due zset, KEYS[3] delivery, KEYS[4] pending zset, KEYS[5]
-- (optional) the subscription to read.
-- ARGV[1] token, ARGV[2] lease ms, ARGV[3] due at (the lease's end), ARGV[4] id,
-- ARGV[5] sha1 of the JSON as read, ARGV[6] the JSON with the attempt, ARGV[7] ttl,
-- ARGV[8] created at.
-- Returns false when the lease is held; {0, current JSON or false} when the record is not
-- as read (leased, nothing written); {1, the subscription's JSON or false} when logged.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local current = redis.call('GET', KEYS[3])
if not current or redis.sha1hex(current) ~= ARGV[5] then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[4])
    return {0, current}
end
redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[7])
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if KEYS[5] then return {1, redis.call('GET', KEYS[5])} end
return {1, false}
""")


def hold_and_read(r: Redis, delivery_ids: list[str], until: float) -> list[str | None]:
    """Make pending deliveries due only at ``until`` and read them, in one round trip."""
    if not delivery_ids:
        return []
    pipe = r.pipeline(transaction=False)
    pipe.zadd(key_for_deliveries_due(), dict.fromkeys(delivery_ids, until), xx=True)
    pipe.mget([key_for_delivery(i) for i in delivery_ids])
    return pipe.execute()[1]


def start(r: Redis, delivery: Delivery, read: str, seconds: float, due_at: float, *,
          subscription: bool) -> tuple[str | None, bool, Delivery | Subscription | None]:
    """Take the lease of ``delivery`` (as ``read`` before, its attempt since appended) and,
    if the record is still ``read``, store ``delivery`` (due at ``due_at``).

    Args:
        subscription: read the delivery's subscription in the same step.

    Returns:
        The lease token (None when another holds it: nothing else then); whether the attempt
        was logged; then the subscription as stored (when logged and asked for), or else
        the delivery as it is now (None when it has none).
    """
    token = secrets.token_hex(16)
    keys = [key_for_delivery_lock(delivery.id), key_for_deliveries_due(),
            key_for_delivery(delivery.id), key_for_deliveries_pending()]
    if subscription:
        keys.append(key_for_subscription(delivery.subscription_id))
    found = _START(keys, [token, int(seconds * 1000), repr(due_at), delivery.id,
                          hashlib.sha1(read.encode()).hexdigest(), delivery.to_json(), TTL,
                          repr(delivery.created_at)], r)
    if found is None:
        return None, False, None
    logged, raw = found
    if not logged:
        return token, False, Delivery.from_json(raw) if raw else None
    return token, True, Subscription.from_json(raw) if raw else None
