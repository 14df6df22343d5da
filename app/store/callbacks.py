"""Received webhook callbacks: persisted raw, once per (provider request id, body)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from redis import Redis

from app.store.keys import key_for_callback, key_for_callbacks_pending, key_for_callbacks_unmatched

CALLBACK_TTL = 7 * 86400


def callback_id(provider_request_id: str, body: bytes) -> str:
    """Return the dedupe id of a callback: hash of the provider's request id and the body."""
    digest = hashlib.sha256(provider_request_id.encode() + b"\n" + body).hexdigest()
    return "cb-" + digest[:40]


def persist(
    r: Redis, provider_request_id: str, body: bytes, headers: Mapping[str, str], source: str,
    request_id: str = "",
) -> tuple[str, bool]:
    """Store a verified callback; return (callback id, is_new). A duplicate changes nothing."""
    cid = callback_id(provider_request_id, body)
    key = key_for_callback(cid)
    record = {
        "provider_request_id": provider_request_id,
        "body": body.decode("utf-8", "replace"),
        "headers": json.dumps(dict(headers)),
        "source": source,
        "received_at": repr(time.time()),
        "settled": "0",
        "request_id": request_id,
    }
    # HSETNX on one field decides who is first; the rest is written by the winner.
    if not r.hsetnx(key, "provider_request_id", provider_request_id):
        return cid, False
    pipe = r.pipeline(transaction=True)
    pipe.hset(key, mapping=record)
    pipe.expire(key, CALLBACK_TTL)
    pipe.zadd(key_for_callbacks_pending(), {cid: time.time()})
    pipe.execute()
    return cid, True


def get(r: Redis, cid: str) -> dict[str, Any] | None:
    """Return a stored callback with its body parsed, or None."""
    raw = r.hgetall(key_for_callback(cid))
    if not raw or "body" not in raw:
        return None
    raw["payload"] = json.loads(raw["body"])
    return raw


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
