"""The sweeper's clock and our shared signing key: small strings every process agrees on.

These work on either client (the records' str one or RQ's bytes one).
"""

from __future__ import annotations

from redis import Redis

from app.store.keys import key_for_last_sweep, key_for_signing_key, key_for_sweep_clock


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def take_interval(r: Redis, seconds: float) -> bool:
    """Claim this sweep interval; False when another clock process has it."""
    return bool(r.set(key_for_sweep_clock(), b"1", nx=True, px=max(1, int(seconds * 1000))))


def last_sweep(r: Redis) -> str | None:
    """Return the RQ job id of the last sweep enqueued, if any."""
    return _text(r.get(key_for_last_sweep())) or None


def remember_sweep(r: Redis, job_id: str) -> None:
    """Record the RQ job id of the sweep just enqueued."""
    r.set(key_for_last_sweep(), job_id, ex=3600)


def shared_signing_key(r: Redis, fresh: str) -> str:
    """Return the signing key all processes share: ``fresh`` if none was stored before."""
    r.set(key_for_signing_key(), fresh, nx=True)
    return _text(r.get(key_for_signing_key())) or fresh


def mark_swept(r: Redis, now: float) -> None:
    """Record when the sweeper last ran."""
    r.set(key_for_last_sweep() + ":at", repr(now), ex=7 * 86400)


def last_swept(r: Redis) -> float | None:
    """Return when the sweeper last ran (epoch seconds), None if never in the last week."""
    value = _text(r.get(key_for_last_sweep() + ":at"))
    return float(value) if value else None
