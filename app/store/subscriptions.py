"""Subscriptions: an API key's callback URLs, event filters and signing secrets."""

from __future__ import annotations

import fnmatch
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis

from app.errors import NotFoundError
from app.signing.standard import new_secret
from app.store.keys import key_for_key_secret, key_for_subscription, key_for_subscriptions_of

EVENT_TYPES = ("request.queued", "request.started", "request.completed", "request.failed",
               "request.cancelled")
MAX_OLD_SECRETS = 10


def matches(event_type: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Return True when one of the event filters (``*``, ``request.*``, exact) matches."""
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


@dataclass
class Subscription:
    """One subscriber endpoint; ``secrets`` are [{"secret", "expires_at"}], newest first."""

    id: str
    key_id: str
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    created_at: float = 0.0
    failing_since: float | None = None
    disabled_reason: str = ""
    secrets: list[dict[str, Any]] = field(default_factory=list)

    def live_secrets(self, now: float) -> list[str]:
        """Return the secrets that still sign: the current one and those in their grace time."""
        return [s["secret"] for s in self.secrets
                if s.get("expires_at") is None or s["expires_at"] > now]

    def wants(self, event_type: str) -> bool:
        """Return True when one of the filters (``*``, ``request.*``, exact) matches."""
        return matches(event_type, self.events)

    def public(self) -> dict[str, Any]:
        """Return the API view (never the secrets)."""
        view = asdict(self)
        view.pop("secrets")
        view.pop("key_id")
        return view


def _save(r: Redis, sub: Subscription) -> None:
    r.set(key_for_subscription(sub.id), json.dumps(asdict(sub)))


def create(r: Redis, key_id: str, url: str, events: list[str],
           description: str = "") -> Subscription:
    """Store a new subscription with a fresh secret."""
    sub = Subscription(id="sub_" + secrets.token_hex(8), key_id=key_id, url=url, events=events,
                       description=description, created_at=time.time(),
                       secrets=[{"secret": new_secret(), "expires_at": None}])
    pipe = r.pipeline(transaction=True)
    pipe.set(key_for_subscription(sub.id), json.dumps(asdict(sub)))
    pipe.sadd(key_for_subscriptions_of(key_id), sub.id)
    pipe.execute()
    return sub


def get(r: Redis, subscription_id: str) -> Subscription | None:
    """Return a subscription, or None."""
    raw = r.get(key_for_subscription(subscription_id))
    return Subscription(**json.loads(raw)) if raw else None


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


def update(r: Redis, sub: Subscription, **changes: Any) -> Subscription:
    """Change fields and save."""
    for name, value in changes.items():
        setattr(sub, name, value)
    _save(r, sub)
    return sub


def delete(r: Redis, sub: Subscription) -> None:
    """Remove a subscription (its delivery records stay for the log)."""
    pipe = r.pipeline(transaction=True)
    pipe.delete(key_for_subscription(sub.id))
    pipe.srem(key_for_subscriptions_of(sub.key_id), sub.id)
    pipe.execute()


def rotate_secret(r: Redis, sub: Subscription, grace: float) -> Subscription:
    """Add a new secret; the old ones keep signing for ``grace`` seconds."""
    now = time.time()
    kept = []
    for entry in sub.secrets:
        expires = entry.get("expires_at")
        if expires is None:
            expires = now + grace
        if expires > now:
            kept.append({"secret": entry["secret"], "expires_at": expires})
    sub.secrets = [{"secret": new_secret(), "expires_at": None}] + kept[:MAX_OLD_SECRETS]
    _save(r, sub)
    return sub


def key_secret(r: Redis, key_id: str) -> str:
    """Return the webhook secret of an API key, created on first use."""
    r.set(key_for_key_secret(key_id), new_secret(), nx=True)
    return r.get(key_for_key_secret(key_id)) or ""
