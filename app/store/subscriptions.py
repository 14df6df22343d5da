"""Subscriptions: an API key's callback URLs, event filters and signing secrets."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import WatchError

from app.errors import NotFoundError, UnavailableError
from app.models import Subscription
from app.signing.standard import new_secret
from app.store.keys import key_for_key_secret, key_for_subscription, key_for_subscriptions_of

MAX_OLD_SECRETS = 10
MAX_TRIES = 50
"""Read-modify-write rounds before a change under constant contention gives up."""


def create(r: Redis, key_id: str, url: str, events: list[str],
           description: str = "") -> Subscription:
    """Store a new subscription with a fresh secret."""
    sub = Subscription(id="sub_" + secrets.token_hex(8), key_id=key_id, url=url, events=events,
                       description=description, created_at=time.time(),
                       secrets=[{"secret": new_secret(), "expires_at": None}])
    pipe = r.pipeline(transaction=True)
    pipe.set(key_for_subscription(sub.id), sub.to_json())
    pipe.sadd(key_for_subscriptions_of(key_id), sub.id)
    pipe.execute()
    return sub


def get(r: Redis, subscription_id: str) -> Subscription | None:
    """Return a subscription, or None."""
    raw = r.get(key_for_subscription(subscription_id))
    return Subscription.from_json(raw) if raw else None


def get_for_key(r: Redis, subscription_id: str, key_id: str) -> Subscription:
    """Return the caller's subscription, or raise NotFoundError."""
    sub = get(r, subscription_id) if len(subscription_id) < 64 else None
    if sub is None or sub.key_id != key_id:
        raise NotFoundError(f"No subscription {subscription_id!r}")
    return sub


def list_for_key(r: Redis, key_id: str) -> list[Subscription]:
    """Return a key's subscriptions, oldest first."""
    found = [get(r, sid) for sid in r.smembers(key_for_subscriptions_of(key_id))]
    return sorted((s for s in found if s is not None), key=lambda s: s.created_at)


def _change(r: Redis, subscription_id: str,
            mutate: Callable[[Subscription], bool | None]) -> Subscription | None:
    """Apply ``mutate`` to the stored subscription as one atomic read-modify-write.

    The key is WATCHed, so a write by anyone else between our read and our write (a PATCH,
    a rotation, a delivery's bookkeeping, a DELETE) makes us read again and re-apply. A
    subscription that does not exist (any more) is never written. ``mutate`` returns False
    when it changed nothing, which spares the write.

    Returns:
        The subscription as stored afterwards, or None when there is none.
    """
    key = key_for_subscription(subscription_id)
    with r.pipeline(transaction=True) as pipe:
        for _ in range(MAX_TRIES):
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if raw is None:
                    return None
                sub = Subscription.from_json(raw)
                if mutate(sub) is False:
                    return sub
                pipe.multi()
                pipe.set(key, sub.to_json())
                pipe.execute()
                return sub
            except WatchError:
                continue
    raise UnavailableError(f"subscription {subscription_id} kept changing; try again")


def update(r: Redis, subscription_id: str, **changes: Any) -> Subscription | None:
    """Change only the given fields of the current stored state; None if it was deleted."""
    def apply(sub: Subscription) -> None:
        for name, value in changes.items():
            setattr(sub, name, value)

    return _change(r, subscription_id, apply)


def delete(r: Redis, sub: Subscription) -> None:
    """Remove a subscription (its delivery records stay for the log)."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(key_for_subscription(sub.id))
    pipe.srem(key_for_subscriptions_of(sub.key_id), sub.id)
    pipe.execute()


def rotate_secret(r: Redis, subscription_id: str, grace: float) -> Subscription | None:
    """Add a new secret; the old ones keep signing for ``grace`` seconds. None if deleted."""
    def apply(sub: Subscription) -> None:
        now = time.time()
        kept = []
        for entry in sub.secrets:
            expires = entry.get("expires_at")
            if expires is None:
                expires = now + grace
            if expires > now:
                kept.append({"secret": entry["secret"], "expires_at": expires})
        sub.secrets = [{"secret": new_secret(), "expires_at": None}] + kept[:MAX_OLD_SECRETS]

    return _change(r, subscription_id, apply)


def mark_failing(r: Redis, subscription_id: str, now: float,
                 forgive_after: float) -> Subscription | None:
    """Record a failed attempt; return the subscription to judge how long it has failed.

    A failure after ``forgive_after`` seconds with no failure recorded starts a new failing
    period: one old failure followed by days of silence is not days of failing.
    """
    def apply(sub: Subscription) -> None:
        last = sub.last_failure_at if sub.last_failure_at is not None else sub.failing_since
        if sub.failing_since is None or last is None or now - last > forgive_after:
            sub.failing_since = now
        sub.last_failure_at = now

    return _change(r, subscription_id, apply)


def mark_healthy(r: Redis, subscription_id: str) -> Subscription | None:
    """Forget the failing period after a success (no write when there is none)."""
    def apply(sub: Subscription) -> bool:
        if sub.failing_since is None and sub.last_failure_at is None:
            return False
        sub.failing_since = sub.last_failure_at = None
        return True

    return _change(r, subscription_id, apply)


def disable(r: Redis, subscription_id: str, reason: str) -> Subscription | None:
    """Disable a subscription; return it only if this call disabled it (not gone or already)."""
    changed = False

    def apply(sub: Subscription) -> bool:
        nonlocal changed
        changed = sub.enabled
        if changed:
            sub.enabled, sub.disabled_reason = False, reason
        return changed

    sub = _change(r, subscription_id, apply)
    return sub if changed else None


def key_secret(r: Redis, key_id: str) -> str:
    """Return the webhook secret of an API key, created on first use."""
    r.set(key_for_key_secret(key_id), new_secret(), nx=True)
    return r.get(key_for_key_secret(key_id)) or ""
