"""The sets that track requests by state: queue positions, leases, events owed.

``store.requests.transition`` keeps them in step with each move (the table is in the
package docstring); the sweeper reads them to heal what a crash left behind.
"""

from __future__ import annotations

from redis import Redis

from app.store.keys import (
    key_for_events_owed,
    key_for_leases,
    key_for_queue,
    key_for_requests_of_status,
)


def extend_lease(r: Redis, request_id: str, until: float) -> None:
    """Keep a running request's lease until ``until`` (ask again then)."""
    r.zadd(key_for_leases(), {request_id: until})


def forget_lease(r: Redis, request_id: str) -> None:
    """Drop a lease that no longer belongs to a running request."""
    r.zrem(key_for_leases(), request_id)


def forget_queued(r: Redis, request_id: str) -> None:
    """Drop a queue entry that no longer belongs to a queued request."""
    r.zrem(key_for_queue(), request_id)


def counts(r: Redis) -> dict[str, int]:
    """Return how many requests are queued and running."""
    return {"queued": r.zcard(key_for_queue()), "running": r.zcard(key_for_leases())}


def queue_position(r: Redis, request_id: str) -> int | None:
    """Return how many queued requests are ahead of this one, or None if not queued."""
    return r.zrank(key_for_queue(), request_id)


def expired_leases(r: Redis, now: float) -> list[str]:
    """Return in-progress requests whose lease ran out."""
    return list(r.zrangebyscore(key_for_leases(), "-inf", now))


def stale_queued(r: Redis, older_than: float) -> list[str]:
    """Return queued requests created before ``older_than`` (epoch seconds)."""
    return list(r.zrangebyscore(key_for_queue(), "-inf", older_than))


def events_owed(r: Redis, before: float, limit: int = 200) -> list[str]:
    """Return finished requests whose terminal event has not been fanned out since ``before``."""
    return list(r.zrangebyscore(key_for_events_owed(), "-inf", before, start=0, num=limit))


def event_paid(r: Redis, request_id: str) -> None:
    """Record that a request's terminal event has been fanned out."""
    r.zrem(key_for_events_owed(), request_id)


def count_for_key(r: Redis, key_id: str, status: str) -> int:
    """Return how many of a key's requests are in ``status`` now (its per-status index)."""
    return r.zcard(key_for_requests_of_status(key_id, status))
