"""One-time upload slots of fal's storage protocol: a PUT URL that names the file's key."""

from __future__ import annotations

from redis import Redis

from app.store.keys import key_for_upload_slot


def open_slot(r: Redis, slot: str, details: dict[str, str], ttl: int) -> None:
    """Make an upload slot that ``take`` can use once within ``ttl`` seconds."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(key_for_upload_slot(slot), mapping=details)
    pipe.expire(key_for_upload_slot(slot), ttl)
    pipe.execute()


def take(r: Redis, slot: str) -> dict[str, str] | None:
    """Use an upload slot: return its details once, None when used or expired."""
    if len(slot) >= 64:
        return None
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(key_for_upload_slot(slot))
    pipe.delete(key_for_upload_slot(slot))
    details, deleted = pipe.execute()
    return details if details and deleted else None
