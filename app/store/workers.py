"""Inference workers' heartbeats: which engine each live worker loaded."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis

from app.store.keys import key_for_worker_heartbeat


def beat(r: Redis, name: str, engine: str, ttl: float) -> None:
    """Say this worker is alive with ``engine`` loaded, for ``ttl`` seconds."""
    key = key_for_worker_heartbeat(name)
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping={"name": name, "engine": engine, "beat": repr(time.time())})
    pipe.expire(key, int(ttl))
    pipe.execute()


def forget(r: Redis, name: str) -> None:
    """Remove a stopping worker's heartbeat."""
    r.delete(key_for_worker_heartbeat(name))


def alive(r: Redis) -> list[dict[str, Any]]:
    """Return the heartbeats of the inference workers alive now."""
    found = []
    for key in r.scan_iter(key_for_worker_heartbeat("*"), count=100):
        info = r.hgetall(key)
        if info:
            found.append(info)
    return found
