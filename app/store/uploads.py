"""One-time upload slots of fal's storage protocol: a PUT URL that names the file's key."""

from __future__ import annotations

from typing import Literal

from redis import Redis

from app.store import script
from app.store.keys import key_for_upload_slot

_ADD_PART = script("""
-- Count a part's bytes into its multipart upload, in one step with the check that the
-- upload is still open: a part that comes after complete took the slot must not make the
-- slot's hash again (it would have no expiry), and HSET on the hash keeps its TTL.
-- KEYS[1] the slot hash
-- ARGV[1] the part's field ('part:N'), ARGV[2] its size, ARGV[3] the upload's byte limit
-- Returns 1 when counted, 0 when the total would pass the limit, -1 when the slot is gone.
if redis.call('HGET', KEYS[1], 'multipart') ~= '1' then return -1 end
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'received') or '0') - before
  + tonumber(ARGV[2])
if total > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'received', total, ARGV[1], ARGV[2])
return 1
""")


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


def add_part(r: Redis, slot: str, number: int, size: int,
             limit: int) -> Literal["added", "too large", "closed"]:
    """Count a part's bytes (as field ``part:N``) into its open multipart upload.

    A part sent again (the client retries) replaces its earlier size in the total.

    Returns:
        "added"; "too large" when the total would pass ``limit`` (nothing counted);
        "closed" when the upload was completed or has expired (nothing written).
    """
    counted = int(_ADD_PART([key_for_upload_slot(slot)], [f"part:{number}", int(size),
                                                          int(limit)], r))
    return "added" if counted == 1 else "too large" if counted == 0 else "closed"


def take(r: Redis, slot: str) -> dict[str, str] | None:
    """Use an upload slot: return its details once, None when used or expired."""
    if len(slot) >= 64:
        return None
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(key_for_upload_slot(slot))
    pipe.delete(key_for_upload_slot(slot))
    details, deleted = pipe.execute()
    return details if details and deleted else None
