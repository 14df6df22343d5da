"""Request records: create, read, list, and compare-and-set state changes."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from redis import Redis

from app.errors import ConflictError, NotFoundError
from app.models import Request, Status
from app.store.keys import (
    key_for_events_owed,
    key_for_idempotency,
    key_for_leases,
    key_for_provider_ref,
    key_for_queue,
    key_for_request,
    key_for_request_logs,
    key_for_requests_of,
)

MAX_LOG_LINES = 500

# Create a request and, with an Idempotency-Key, claim the key in the same step: two
# concurrent requests with one key can never both create (KEYS[4] is the key's hash, or the
# request itself when there is no key: ARGV[7] == 'none').
_CREATE = """
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
return {1, ARGV[1], ARGV[5]}
"""

# KEYS[1] request hash, KEYS[2] queue zset, KEYS[3] leases zset, KEYS[4] events-owed zset
# ARGV[1] allowed from-states (comma list), ARGV[2] new state, ARGV[3] request id,
# ARGV[4] lease expiry or "", ARGV[5] now; ARGV[6..] field/value pairs to set with the change.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return 'missing' end
local allowed = false
for state in string.gmatch(ARGV[1], '[^,]+') do
  if state == current then allowed = true end
end
if not allowed then return current end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] ~= 'IN_QUEUE' then redis.call('ZREM', KEYS[2], ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
else
  redis.call('ZREM', KEYS[3], ARGV[3])
end
if ARGV[2] == 'COMPLETED' or ARGV[2] == 'FAILED' or ARGV[2] == 'CANCELLED' then
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
end
return 'ok'
"""


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
    fields: Mapping[str, str] | None = None,
) -> tuple[Request, bool]:
    """Store a new IN_QUEUE request; return (request, created).

    With an idempotency key the same key and body return the first request
    (created False); the same key with another body raises ConflictError.
    """
    now = time.time()
    request = Request(
        id=new_request_id(), key_id=key_id, status=Status.IN_QUEUE, input=dict(input),
        created_at=now, provider=provider, webhook_url=webhook_url, fal_webhook=fal_webhook,
    )
    idem = key_for_idempotency(key_id, idempotency_key) if idempotency_key else ""
    stored = {**request.to_redis(), **(fields or {})}
    values = [x for pair in stored.items() for x in pair]
    for retake in ("", "retake"):
        created, known_id, known_hash = r.eval(
            _CREATE, 4, key_for_request(request.id), key_for_requests_of(key_id),
            key_for_queue(), idem or key_for_request(request.id), request.id, ttl,
            int(now * 1000), repr(now), body_hash, idempotency_ttl, retake if idem else "none",
            *values)
        if created:
            return request, True
        if known_hash != body_hash:
            raise ConflictError(
                "Idempotency-Key was already used with a different body; "
                "use a new key for a new request", field="Idempotency-Key")
        existing = get(r, known_id)
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
    from_states: Iterable[Status],
    to: Status,
    fields: Mapping[str, Any] | None = None,
    lease_until: float | None = None,
) -> bool:
    """Move a request to ``to`` if it is in one of ``from_states``; return True if it moved.

    The check and the write are one Lua script, so two workers never both win. Reaching a
    terminal state also records, in the same step, that its event is owed (see events.emit),
    so a crash before the fan-out is healed by the sweeper, never lost.
    """
    values: list[str] = []
    for name, value in (fields or {}).items():
        values += [name, value if isinstance(value, str) else json.dumps(value)]
    result = r.eval(
        _TRANSITION, 4, key_for_request(request_id), key_for_queue(), key_for_leases(),
        key_for_events_owed(), ",".join(s.value for s in from_states), to.value, request_id,
        "" if lease_until is None else repr(lease_until), repr(time.time()), *values,
    )
    return result == "ok"


def fail(r: Redis, request_id: str, from_states: Iterable[Status], error_type: str,
         reason: str, now: float | None = None) -> bool:
    """Move a request to FAILED with an error saying why, and log the reason; True if it moved."""
    moved = transition(r, request_id, from_states, Status.FAILED, {
        "error": {"type": error_type, "message": reason},
        "completed_at": repr(time.time() if now is None else now)})
    if moved:
        add_log(r, request_id, reason, "ERROR")
    return moved


def update(r: Redis, request_id: str, **values: Any) -> None:
    """Set plain fields on a request (no state change)."""
    mapping = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    r.hset(key_for_request(request_id), mapping=mapping)


def queue_position(r: Redis, request_id: str) -> int | None:
    """Return how many queued requests are ahead of this one, or None if not queued."""
    return r.zrank(key_for_queue(), request_id)


def add_log(r: Redis, request_id: str, message: str, level: str = "INFO") -> None:
    """Append one timestamped log line to a request (bounded)."""
    line = json.dumps({"message": message, "level": level, "source": "worker",
                       "timestamp": _iso(time.time())})
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
    index = key_for_requests_of(key_id)
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
        for request_id, score in batch:
            # Same millisecond as the cursor: members come in falling id order.
            if after is not None and int(score) == int(top) and request_id >= after:
                continue
            request = get(r, request_id)
            if request is None:
                r.zrem(index, request_id)
                offset -= 1
                continue
            if status and request.status.value != status:
                continue
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


def expired_leases(r: Redis, now: float) -> list[str]:
    """Return in-progress requests whose lease ran out."""
    return list(r.zrangebyscore(key_for_leases(), "-inf", now))


def stale_queued(r: Redis, older_than: float) -> list[str]:
    """Return queued requests created before ``older_than`` (epoch seconds)."""
    return list(r.zrangebyscore(key_for_queue(), "-inf", older_than))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


iso = _iso


def events_owed(r: Redis, before: float, limit: int = 200) -> list[str]:
    """Return finished requests whose terminal event has not been fanned out since ``before``."""
    return list(r.zrangebyscore(key_for_events_owed(), "-inf", before, start=0, num=limit))


def event_paid(r: Redis, request_id: str) -> None:
    """Record that a request's terminal event has been fanned out."""
    r.zrem(key_for_events_owed(), request_id)
