"""fal-style webhook signatures: ED25519 over request id, user id, timestamp, SHA-256(body).

Pure functions over (body, headers, keys, now); no Flask, no network. The JWKS cache
for fal's keys lives beside them and takes its fetch function as an argument.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.errors import (
    MalformedSignature,
    MissingSignatureHeader,
    SigningKeysUnavailable,
    StaleSignature,
    UnknownSigningKey,
)
from app.signing.keys import public_keys_from_jwks

HEADER_REQUEST_ID = "X-Fal-Webhook-Request-Id"
HEADER_USER_ID = "X-Fal-Webhook-User-Id"
HEADER_TIMESTAMP = "X-Fal-Webhook-Timestamp"
HEADER_SIGNATURE = "X-Fal-Webhook-Signature"


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """Return the bytes fal signs: the four parts joined by newlines."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([request_id, user_id, timestamp, digest]).encode()


def sign(
    key: Ed25519PrivateKey, request_id: str, user_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """Return the four X-Fal-Webhook-* headers for a body."""
    timestamp = str(int(time.time() if now is None else now))
    signature = key.sign(message(request_id, user_id, timestamp, body)).hex()
    return {HEADER_REQUEST_ID: request_id, HEADER_USER_ID: user_id,
            HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature}


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower(), "")
    if not value:
        raise MissingSignatureHeader(f"missing header {name}")
    return value


def verify(
    body: bytes,
    headers: Mapping[str, str],
    keys: Sequence[Ed25519PublicKey],
    *,
    now: float | None = None,
    tolerance: int = 300,
) -> str:
    """Check a callback's signature against any of ``keys``; return fal's request id.

    Raises:
        SignatureError: a header is missing, the timestamp is off by more than
            ``tolerance`` seconds, or no key verifies the signature.
    """
    request_id = _header(headers, HEADER_REQUEST_ID)
    user_id = _header(headers, HEADER_USER_ID)
    timestamp = _header(headers, HEADER_TIMESTAMP)
    signature_hex = _header(headers, HEADER_SIGNATURE)
    try:
        sent_at = int(timestamp)
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise MalformedSignature("malformed timestamp or signature") from exc
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise StaleSignature("timestamp outside the allowed window")
    signed = message(request_id, user_id, timestamp, body)
    for key in keys:
        try:
            key.verify(signature, signed)
            return request_id
        except InvalidSignature:
            continue
    raise UnknownSigningKey("no key verifies the signature")


class JwksCache:
    """fal's public keys: cached up to ``max_age``, re-fetched at most every ``min_refresh``.

    ``fetch`` returns the parsed JWKS document or raises; when nothing was ever fetched,
    ``keys()`` raises SignatureError (fail closed).
    """

    def __init__(self, fetch: Callable[[], Any], max_age: float = 86400, min_refresh: float = 60):
        self._fetch = fetch
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = 0.0
        self._tried_at = float("-inf")
        self._lock = threading.Lock()

    def keys(self, *, refresh: bool = False) -> list[Ed25519PublicKey]:
        """Return the keys, fetching when stale, or when asked and not fetched lately."""
        with self._lock:
            now = time.monotonic()
            stale = not self._keys or now - self._fetched_at > self._max_age
            if (stale or refresh) and now - self._tried_at >= self._min_refresh:
                self._tried_at = now
                try:
                    fetched = public_keys_from_jwks(self._fetch())
                except Exception:  # noqa: BLE001 - any fetch failure means "keep what we have"
                    fetched = []
                if fetched:
                    self._keys, self._fetched_at = fetched, now
                elif stale:
                    self._keys = []
            if not self._keys:
                raise SigningKeysUnavailable("signing keys unavailable")
            return list(self._keys)


def jwks_cache(url: str, min_refresh: float = 60) -> JwksCache:
    """Return a cache of the keys published at ``url`` (a JWKS), fetched with httpx."""
    import httpx

    def fetch() -> object:
        answer = httpx.get(url, timeout=10, follow_redirects=False)
        answer.raise_for_status()
        return answer.json()

    return JwksCache(fetch, min_refresh=min_refresh)
