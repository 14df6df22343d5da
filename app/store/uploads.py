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


def peek(r: Redis, slot: str) -> dict[str, str] | None:
    """Return an open slot's details without using it (a multipart upload's parts)."""
    if len(slot) >= 64:
        return None
    return r.hgetall(key_for_upload_slot(slot)) or None


def add_part(r: Redis, slot: str, number: int, size: int, limit: int) -> bool:
    """Count a part's bytes into its multipart upload; False when the total passes ``limit``.

    A part sent again (the client retries) replaces its earlier size in the total.
    """
    key = key_for_upload_slot(slot)
    before = int(r.hget(key, f"part:{number}") or 0)
    total = r.hincrby(key, "received", size - before)
    if total > limit:
        r.hincrby(key, "received", before - size)
        return False
    r.hset(key, f"part:{number}", size)
    return True


def take(r: Redis, slot: str) -> dict[str, str] | None:
    """Use an upload slot: return its details once, None when used or expired."""
    if len(slot) >= 64:
        return None
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(key_for_upload_slot(slot))
    pipe.delete(key_for_upload_slot(slot))
    details, deleted = pipe.execute()
    return details if details and deleted else None
