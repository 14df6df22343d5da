"""What is stored, whose it is and until when: the janitor's index of files.

Every stored file has a hash (owner, size) and a place in ``files:expiry`` (when it may go).
A request's files expire with its record; an upload no request used, after the upload TTL.
Keeping a file only ever extends its expiry, so a file shared by several owners goes with
the last of them. The janitor takes due files into ``files:deleting`` (a file there can no
longer be kept: it is being deleted), deletes them from storage, then forgets them; a take
that a crash left in ``deleting`` is taken again after ``lease`` seconds.
"""

from __future__ import annotations

from redis import Redis

from app.store import script
from app.store.keys import (
    key_for_file,
    key_for_files_bytes,
    key_for_files_deleting,
    key_for_files_expiry,
)

_KEEP = script("""
-- KEYS[1] file hash, KEYS[2] files:expiry, KEYS[3] files:deleting, KEYS[4] files:bytes
-- ARGV[1] storage key, ARGV[2] owner, ARGV[3] size, ARGV[4] keep until (s)
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
local old = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not old then
  redis.call('INCRBY', KEYS[4], ARGV[3])
  redis.call('HSET', KEYS[1], 'size', ARGV[3], 'owner', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
elseif tonumber(ARGV[4]) >= tonumber(old) then
  redis.call('HSET', KEYS[1], 'owner', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
return 1
""")

_TAKE = script("""
-- KEYS[1] files:expiry, KEYS[2] files:deleting
-- ARGV[1] now (s), ARGV[2] most to take, ARGV[3] takes started before this are retaken
local taken = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, ARGV[2])
local room = tonumber(ARGV[2]) - #taken
if room > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, room)
  for _, key in ipairs(due) do
    redis.call('ZREM', KEYS[1], key)
    table.insert(taken, key)
  end
end
for _, key in ipairs(taken) do redis.call('ZADD', KEYS[2], ARGV[1], key) end
return taken
""")

_FORGET = script("""
-- Drop files from the index, each only if it is still in the set KEYS[1] (files:deleting
-- once the janitor has taken them, files:expiry for one deleted before it was due).
-- KEYS[1] that set, KEYS[2] files:bytes, KEYS[3..] the files' hashes
-- ARGV the storage keys, in the order of KEYS[3..]
local forgotten = 0
for i, key in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], key) == 1 then
    local size = tonumber(redis.call('HGET', KEYS[i + 2], 'size') or '0')
    redis.call('DECRBY', KEYS[2], size)
    redis.call('DEL', KEYS[i + 2])
    forgotten = forgotten + 1
  end
end
return forgotten
""")


_ADOPT = script("""
-- KEYS[1] files:expiry, KEYS[2] files:deleting, KEYS[3] files:bytes, KEYS[4..] file hashes
-- ARGV[1] owner, ARGV[2] keep until (s), then storage key and size of each file in turn
local adopted = 0
for i = 4, #KEYS do
  local key, size = ARGV[2 * i - 5], ARGV[2 * i - 4]
  if not redis.call('ZSCORE', KEYS[1], key) and not redis.call('ZSCORE', KEYS[2], key) then
    redis.call('INCRBY', KEYS[3], size)
    redis.call('HSET', KEYS[i], 'size', size, 'owner', ARGV[1])
    redis.call('ZADD', KEYS[1], ARGV[2], key)
    adopted = adopted + 1
  end
end
return adopted
""")

def keep(r: Redis, storage_key: str, owner: str, size: int, until: float) -> bool:
    """Record (or extend) a file's owner and expiry; False when it is being deleted."""
    return bool(_KEEP(keys=[key_for_file(storage_key), key_for_files_expiry(),
                            key_for_files_deleting(), key_for_files_bytes()],
                      args=[storage_key, owner, int(size), repr(float(until))], client=r))


def adopt(r: Redis, found: list[tuple[str, int]], owner: str, until: float) -> int:
    """Index the files of ``found`` (key, size) that are not indexed yet; return how many.

    A file already indexed (or being deleted) keeps its owner and expiry: adopting twice
    changes nothing.
    """
    if not found:
        return 0
    args = [owner, repr(float(until))]
    for storage_key, size in found:
        args += [storage_key, int(size)]
    return int(_ADOPT(keys=[key_for_files_expiry(), key_for_files_deleting(),
                            key_for_files_bytes(), *(key_for_file(k) for k, _ in found)],
                      args=args, client=r))


def take_due(r: Redis, now: float, limit: int, lease: float) -> list[str]:
    """Take up to ``limit`` files due by ``now`` for deletion (and takes older than lease)."""
    return list(_TAKE(keys=[key_for_files_expiry(), key_for_files_deleting()],
                      args=[repr(float(now)), int(limit), repr(float(now - lease))], client=r))


def forget(r: Redis, storage_keys: list[str]) -> int:
    """Drop deleted files from the index (only those still taken: twice is harmless)."""
    if not storage_keys:
        return 0
    return int(_FORGET(keys=[key_for_files_deleting(), key_for_files_bytes(),
                             *(key_for_file(k) for k in storage_keys)],
                       args=list(storage_keys), client=r))


def discard(r: Redis, storage_key: str) -> bool:
    """Drop a file deleted before its expiry from the index; False when it was not there."""
    return bool(_FORGET(keys=[key_for_files_expiry(), key_for_files_bytes(),
                              key_for_file(storage_key)], args=[storage_key], client=r))


def facts(r: Redis, storage_key: str) -> dict[str, str | float] | None:
    """Return a tracked file's owner, size and expiry (None when untracked)."""
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(key_for_file(storage_key))
    pipe.zscore(key_for_files_expiry(), storage_key)
    found, until = pipe.execute()
    if not found:
        return None
    return {**found, "until": until if until is not None else 0.0}


def usage(r: Redis, now: float) -> dict[str, int]:
    """Return the tracked files and bytes, and how many are past their expiry."""
    pipe = r.pipeline(transaction=False)
    pipe.zcard(key_for_files_expiry())
    pipe.zcard(key_for_files_deleting())
    pipe.get(key_for_files_bytes())
    pipe.zcount(key_for_files_expiry(), "-inf", now)
    kept, deleting, size, due = pipe.execute()
    return {"files": int(kept) + int(deleting), "bytes": int(size or 0),
            "due": int(due) + int(deleting)}
