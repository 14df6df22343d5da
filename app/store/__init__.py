"""Redis-backed records: requests, callbacks, API keys, subscriptions, deliveries.

No Flask here. Every function takes the Redis client first; the client decodes
responses to ``str`` (RQ keeps its own byte-level connection, see ``app.queues``).
"""

from __future__ import annotations

from redis import Redis


def connect(url: str) -> Redis:
    """Return a Redis client for records (str responses, short timeouts)."""
    return Redis.from_url(
        url, decode_responses=True, socket_timeout=10, socket_connect_timeout=5,
        health_check_interval=30,
    )
