"""API keys, stored only as the SHA-256 of the key (keys are 32 random bytes)."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from app.store.keys import key_for_api_key, key_for_api_keys

KEY_PREFIX = "ph_"


@dataclass(frozen=True)
class ApiKey:
    """One API key's public facts (never the key itself)."""

    id: str
    name: str
    created_at: float
    revoked: bool


def hash_key(key: str) -> str:
    """Return the stored form of a key: hex SHA-256 (keys carry 256 random bits)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create(r: Redis, name: str) -> tuple[ApiKey, str]:
    """Create a key; return its record and the key itself (shown once)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = "key_" + secrets.token_hex(6)
    record = ApiKey(id=key_id, name=name, created_at=time.time(), revoked=False)
    digest = hash_key(key)
    pipe = r.pipeline(transaction=True)
    pipe.hset(key_for_api_key(digest), mapping={
        "id": key_id, "name": name, "created_at": repr(record.created_at), "revoked": "0"})
    pipe.hset(key_for_api_keys(), key_id, digest)
    pipe.execute()
    return record, key


def authenticate(r: Redis, key: str) -> ApiKey | None:
    """Return the live key record for a presented key, or None.

    The lookup is by hash, so no comparison of secrets happens in Python.
    """
    if not key or len(key) > 200:
        return None
    raw = r.hgetall(key_for_api_key(hash_key(key)))
    if not raw or raw.get("revoked") == "1":
        return None
    return _from_raw(raw)


def _from_raw(raw: dict[str, str]) -> ApiKey:
    return ApiKey(id=raw["id"], name=raw.get("name", ""), created_at=float(raw["created_at"]),
                  revoked=raw.get("revoked") == "1")


def list_keys(r: Redis) -> list[ApiKey]:
    """Return every key record, oldest first."""
    out = []
    for digest in r.hvals(key_for_api_keys()):
        raw = r.hgetall(key_for_api_key(digest))
        if raw:
            out.append(_from_raw(raw))
    return sorted(out, key=lambda k: k.created_at)


def get_live(r: Redis, key_id: str) -> ApiKey | None:
    """Return a key record by id when it exists and is not revoked, else None."""
    digest = r.hget(key_for_api_keys(), key_id) if len(key_id) <= 64 else None
    raw = r.hgetall(key_for_api_key(digest)) if digest else None
    if not raw or raw.get("revoked") == "1":
        return None
    return _from_raw(raw)


def revoke(r: Redis, key_id: str) -> bool:
    """Revoke a key by id; return False when there is no such key."""
    digest = r.hget(key_for_api_keys(), key_id)
    if not digest:
        return False
    r.hset(key_for_api_key(digest), "revoked", "1")
    return True
