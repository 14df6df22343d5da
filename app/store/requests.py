"""Request records: create, read, list, and compare-and-set state changes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from redis import Redis

from app.errors import ConflictError, NotFoundError
from app.models import TRANSITIONS, Request, Status
from app.store import idempotency, script
from app.store.keys import (
    key_for_events_owed,
    key_for_idempotency,
    key_for_leases,
    key_for_provider_ref,
    key_for_queue,
    key_for_request,
    key_for_request_logs,
    key_for_requests_of,
    key_for_requests_of_status,
)

MAX_LOG_LINES = 500

_CREATE = script("""
-- Create a request and, with an Idempotency-Key, claim the key in the same step: two
-- concurrent requests with one key can never both create.
-- KEYS[1] request hash, KEYS[2] the key's requests zset, KEYS[3] queued zset,
-- KEYS[4] the idempotency hash (the request hash itself when there is no key),
-- KEYS[5] the key's IN_QUEUE requests zset
-- ARGV[1] request id, ARGV[2] ttl, ARGV[3] created (ms), ARGV[4] created (s),
-- ARGV[5] body hash, ARGV[6] idempotency ttl, ARGV[7] 'none' (no key) | '' | 'retake',
-- ARGV[8..] field/value pairs of the record
-- Returns {created 0|1, request id, body hash}.
if ARGV[7] ~= 'none' then
  local known = redis.call('HMGET', KEYS[4], 'request_id', 'body_hash')
  if known[1] and ARGV[7] ~= 'retake' then
    return {0, known[1], known[2] or ''}
  end
  redis.call('HSET', KEYS[4], 'request_id', ARGV[1], 'body_hash', ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[6])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return {1, ARGV[1], ARGV[5]}
""")

_TRANSITION = script("""
-- Move a request from one of the allowed states to a new one, keeping its sets in step.
-- KEYS[1] request hash, KEYS[2] queued zset, KEYS[3] leases zset, KEYS[4] events-owed zset
-- ARGV[1] allowed from-states (comma list), ARGV[2] new state, ARGV[3] request id,
-- ARGV[4] lease expiry or '', ARGV[5] now, ARGV[6] '1' when the new state is queued,
-- ARGV[7] '1' when it is terminal, ARGV[8] '1' when the move is announced (it takes the
-- next event sequence number), ARGV[9] the prefix of the per-key indexes (the key's
-- requests zset is prefix..key_id, its per-status ones that plus ':status:'..state),
-- ARGV[10..] field/value pairs to set with the change
-- Returns {1, sequence taken or 0} when it moved, {0, current state or 'missing'} when not.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, 'missing'} end
local allowed = false
for state in string.gmatch(ARGV[1], '[^,]+') do
  if state == current then allowed = true end
end
if not allowed then return {0, current} end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local by_key = ARGV[9] .. redis.call('HGET', KEYS[1], 'key_id')
local created = redis.call('ZSCORE', by_key, ARGV[3])
redis.call('ZREM', by_key .. ':status:' .. current, ARGV[3])
if created then redis.call('ZADD', by_key .. ':status:' .. ARGV[2], created, ARGV[3]) end
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created_at'), ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
else
  redis.call('ZREM', KEYS[3], ARGV[3])
end
if ARGV[7] == '1' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3]) end
local sequence = 0
if ARGV[8] == '1' then sequence = redis.call('HINCRBY', KEYS[1], 'event_seq', 1) end
return {1, sequence}
""")


def new_request_id() -> str:
    """Return an unguessable request id (letters, digits and '-' only, RQ-safe)."""
    return secrets.token_hex(16)


def create(
    r: Redis,
    *,
    key_id: str,
    input: Mapping[str, Any],
    provider: str,
    webhook_url: str = "",
    fal_webhook: str = "",
    idempotency_key: str = "",
    body_hash: str = "",
    idempotency_ttl: int = 86400,
    ttl: int = 30 * 86400,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Request, bool]:
    """Store a new IN_QUEUE request; return (request, created).

    With an idempotency key the same key and body return the first request
    (created False); the same key with another body raises ConflictError.
    """
    now = time.time()
    request = Request(
        id=new_request_id(), key_id=key_id, status=Status.IN_QUEUE, input=dict(input),
        created_at=now, provider=provider, webhook_url=webhook_url, fal_webhook=fal_webhook,
        **(extra or {}),
    )
    idem = key_for_idempotency(key_id, idempotency_key) if idempotency_key else ""
    values = [x for pair in request.to_redis().items() for x in pair]
    for retake in ("", "retake"):
        created, known_id, known_hash = _CREATE(
            [key_for_request(request.id), key_for_requests_of(key_id), key_for_queue(),
             idem or key_for_request(request.id),
             key_for_requests_of_status(key_id, Status.IN_QUEUE.value)],
            [request.id, ttl, int(now * 1000), repr(now), body_hash, idempotency_ttl,
             retake if idem else "none", *values], r)
        if created:
            return request, True
        existing = idempotency.known(r, known_id, known_hash, body_hash)
        if existing is not None:
            return existing, False
        # The first request with this key is gone (deleted): this one takes the key.
    raise ConflictError("Idempotency-Key is being taken by another request; try again",
                        field="Idempotency-Key")


def get(r: Redis, request_id: str) -> Request | None:
    """Return the request, or None when there is none."""
    raw = r.hgetall(key_for_request(request_id))
    return Request.from_redis(raw) if raw else None


def get_for_key(r: Redis, request_id: str, key_id: str) -> Request:
    """Return the caller's own request, or raise NotFoundError."""
    request = get(r, request_id) if _is_id(request_id) else None
    if request is None or request.key_id != key_id:
        raise NotFoundError(f"No request {request_id!r}")
    return request


def _is_id(text: str) -> bool:
    return 0 < len(text) <= 64 and all(c.isalnum() or c in "-_" for c in text)


def transition(
    r: Redis,
    request_id: str,
    to: Status,
    sources: Iterable[Status],
    fields: Mapping[str, Any] | None = None,
    *,
    lease_until: float | None = None,
    announce: bool = True,
    now: float | None = None,
) -> int | None:
    """Move a request to ``to`` if it is in one of ``sources``; only ``app.lifecycle`` calls it.

    The check and the write are one Lua script, so two workers never both win. Reaching a
    terminal state also records, in the same step, that its event is owed, so a crash
    before the fan-out is healed by the sweeper, never lost; an announced move takes the
    next event sequence number in the same step, so events are numbered in the order the
    moves happened.

    Returns:
        None when it did not move; else the sequence number its event takes (0 when the
        move is not announced).
    """
    sources = tuple(sources)
    if not set(sources) <= TRANSITIONS[to]:
        raise ValueError(f"{to.value} cannot be reached from {[s.value for s in sources]}")
    values = [x for pair in Request.encode_fields(dict(fields or {})).items() for x in pair]
    moved, value = _TRANSITION(
        [key_for_request(request_id), key_for_queue(), key_for_leases(), key_for_events_owed()],
        [",".join(s.value for s in sources), to.value, request_id,
         "" if lease_until is None else repr(lease_until),
         repr(time.time() if now is None else now), "1" if to is Status.IN_QUEUE else "0",
         "1" if to.is_terminal else "0", "1" if announce else "0", key_for_requests_of(""),
         *values], r)
    return int(value) if moved else None


def update(r: Redis, request_id: str, **values: Any) -> None:
    """Set plain fields on a request (no state change; the fields of ``models.Request``)."""
    r.hset(key_for_request(request_id), mapping=Request.encode_fields(values))


def mark_submitting(r: Redis, request_id: str, now: float) -> bool:
    """Record that a submit to fal is being sent; False when one was sent before."""
    return bool(r.hsetnx(key_for_request(request_id), "fal_submitted_at", repr(now)))


def count_settle_failure(r: Redis, request_id: str) -> int:
    """Count one more failed try to settle a request; return how many there were."""
    return int(r.hincrby(key_for_request(request_id), "settle_failures", 1))


def next_event_seq(r: Redis, request_id: str) -> int:
    """Take the next event sequence number of a request (an event no move made)."""
    return int(r.hincrby(key_for_request(request_id), "event_seq", 1))


def add_log(r: Redis, request_id: str, message: str, level: str = "INFO") -> None:
    """Append one timestamped log line to a request (bounded)."""
    line = json.dumps({"message": message, "level": level, "source": "worker",
                       "timestamp": iso(time.time())})
    pipe = r.pipeline()
    pipe.rpush(key_for_request_logs(request_id), line)
    pipe.ltrim(key_for_request_logs(request_id), -MAX_LOG_LINES, -1)
    pipe.expire(key_for_request_logs(request_id), 30 * 86400)
    pipe.execute()


def logs(r: Redis, request_id: str) -> list[dict[str, Any]]:
    """Return a request's log lines, oldest first."""
    return [json.loads(x) for x in r.lrange(key_for_request_logs(request_id), 0, -1)]


def list_for_key(
    r: Redis, key_id: str, *, status: str | None = None, limit: int = 20, cursor: str | None = None
) -> tuple[list[Request], str | None]:
    """Return one page of a key's requests, newest first, and the next cursor.

    The cursor is ``<ms>-<request id>`` of the last one given: requests made in the same
    millisecond (same score, then ordered by id) are neither skipped nor repeated.
    """
    # Each status has its own index: a filtered page reads what it returns, not every record.
    index = key_for_requests_of_status(key_id, status) if status else key_for_requests_of(key_id)
    top, after = "+inf", None
    if cursor:
        score, _, after = cursor.partition("-")
        top = score
    found: list[tuple[Request, int]] = []
    offset = 0
    while len(found) <= limit:  # one more than asked: is there a next page?
        batch = r.zrevrangebyscore(index, top, "-inf", start=offset, num=limit * 2 + 1,
                                   withscores=True)
        if not batch:
            break
        offset += len(batch)
        pipe = r.pipeline(transaction=False)
        for request_id, _ in batch:
            pipe.hgetall(key_for_request(request_id))
        records = pipe.execute()
        for (request_id, score), raw in zip(batch, records, strict=True):
            # Same millisecond as the cursor: members come in falling id order.
            if after is not None and int(score) == int(top) and request_id >= after:
                continue
            request = Request.from_redis(raw) if raw else None
            if request is None:
                r.zrem(index, request_id)
                offset -= 1
                continue
            if status and request.status.value != status:
                continue  # it moved on since the index was read
            found.append((request, int(score)))
            if len(found) > limit:
                break
    next_cursor = None
    if len(found) > limit:
        last, score = found[limit - 1]
        next_cursor = f"{score}-{last.id}"
    return [request for request, _ in found[:limit]], next_cursor


def link_provider_ref(r: Redis, provider: str, ref: str, request_id: str, ttl: int) -> None:
    """Remember which of our requests a provider's request id belongs to."""
    r.set(key_for_provider_ref(provider, ref), request_id, ex=ttl)


def find_by_provider_ref(r: Redis, provider: str, ref: str) -> str | None:
    """Return our request id for a provider's request id, if known."""
    return r.get(key_for_provider_ref(provider, ref))


def iso(ts: float) -> str:
    """Return an epoch time as ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
