"""Idempotency-Keys: which request a key already names, looked up before any work is done.

``requests.create`` claims a key in the same step as it makes the request (so two requests
with one key never both create); :func:`replay` only reads it, so a replay or a conflict is
answered before its input is checked or stored.
"""

from __future__ import annotations

from redis import Redis

from app.errors import ConflictError
from app.models import Request
from app.store.keys import key_for_idempotency, key_for_request


def known(r: Redis, known_id: str, known_hash: str, body_hash: str) -> Request | None:
    """Return the request a key names (None when it is gone: the key may be taken again).

    Raises:
        ConflictError: the key came with another body first.
    """
    if known_hash != body_hash:
        raise ConflictError("Idempotency-Key was already used with a different body; "
                            "use a new key for a new request", field="Idempotency-Key")
    raw = r.hgetall(key_for_request(known_id))
    return Request.from_redis(raw) if raw else None


def replay(r: Redis, key_id: str, idempotency_key: str, body_hash: str) -> Request | None:
    """Return the request ``idempotency_key`` already names for this body, or None (new).

    Raises:
        ConflictError: the key came with another body first.
    """
    known_id, known_hash = r.hmget(key_for_idempotency(key_id, idempotency_key),
                                   "request_id", "body_hash")
    return known(r, known_id, known_hash or "", body_hash) if known_id else None
