"""One-time upload slots of fal's storage protocol: a PUT URL that names the file's key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from redis import Redis
from redis.exceptions import WatchError

from app.store import script
from app.store.keys import key_for_upload_slot

_ADD_PART = script("""
-- Count a part already stored into its multipart upload, in one step with the check that
-- the upload is still open: a part stored after complete took the slot must not make the
-- slot's hash again (it would have no expiry), and HSET on the hash keeps its TTL.
-- KEYS[1] the slot hash
-- ARGV[1] the part's number, ARGV[2] its size, ARGV[3] its etag, ARGV[4] the byte limit
-- Returns 1 when counted, 0 when the total would pass the limit, -1 when the slot is gone.
if redis.call('HGET', KEYS[1], 'multipart') ~= '1' then return -1 end
local size, etag = 'part:' .. ARGV[1], 'etag:' .. ARGV[1]
local before = tonumber(redis.call('HGET', KEYS[1], size) or '0')
local rest = tonumber(redis.call('HGET', KEYS[1], 'received') or '0') - before
if rest + tonumber(ARGV[2]) > tonumber(ARGV[4]) then
  -- The bytes stored under this number are now the refused ones: the earlier part is gone.
  redis.call('HSET', KEYS[1], 'received', rest)
  redis.call('HDEL', KEYS[1], size, etag)
  return 0
end
redis.call('HSET', KEYS[1], 'received', rest + tonumber(ARGV[2]), size, ARGV[2], etag, ARGV[3])
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


def add_part(r: Redis, slot: str, number: int, size: int, etag: str,
             limit: int) -> Literal["added", "too large", "closed"]:
    """Count a stored part's bytes (field ``part:N``) and etag (``etag:N``) into its open
    multipart upload: only what is stored is counted, so complete never joins a part whose
    bytes are still on their way.

    A part sent again (the client retries) replaces its earlier size in the total.

    Returns:
        "added"; "too large" when the total would pass ``limit`` (the part under this number
        is then uncounted: its stored bytes are the refused ones); "closed" when the upload
        was completed or has expired (nothing written).
    """
    counted = int(_ADD_PART([key_for_upload_slot(slot)], [int(number), int(size), etag,
                                                          int(limit)], r))
    return "added" if counted == 1 else "too large" if counted == 0 else "closed"


def take_checked(r: Redis, slot: str,
                 check: Callable[[dict[str, str]], None]) -> dict[str, str] | None:
    """Use an upload slot only if ``check(details)`` passes: return its details once, None
    when used or expired.

    ``check`` raises to refuse, and the slot stays open. The check and the use are one step
    (WATCH): a part counted in between makes the check run again on what the slot says now.
    """
    if len(slot) >= 64:
        return None
    key = key_for_upload_slot(slot)
    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                details = pipe.hgetall(key)
                if not details:
                    return None
                check(details)
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
                return details
            except WatchError:
                continue


def take(r: Redis, slot: str) -> dict[str, str] | None:
    """Use an upload slot: return its details once, None when used or expired."""
    if len(slot) >= 64:
        return None
    pipe = r.pipeline(transaction=True)
    pipe.hgetall(key_for_upload_slot(slot))
    pipe.delete(key_for_upload_slot(slot))
    details, deleted = pipe.execute()
    return details if details and deleted else None
