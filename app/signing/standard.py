"""Standard Webhooks signatures: ``v1`` HMAC-SHA256 per live secret, ``v1a`` ED25519 beside.

Signed content is ``"{id}.{timestamp}.{body}"``; secrets are ``whsec_`` + base64 of 32
random bytes. Pure functions: bytes and strings in, header values out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """Return a fresh secret: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """Return the key bytes of a whsec_ secret."""
    text = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(text + "=" * (-len(text) % 4))


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """Return the bytes every signature covers."""
    return f"{msg_id}.{timestamp}.".encode() + body


def sign(msg_id: str, timestamp: int, body: bytes, hmac_secrets: Sequence[str],
         key: Ed25519PrivateKey | None = None, *, signed: bytes | None = None) -> str:
    """Return the webhook-signature value: one v1 per secret, then v1a when a key is given.

    ``signed``, when given, is the key's signature of the same content, made before (every
    delivery of an event in the same second signs the same content with our key).
    """
    content = signed_content(msg_id, timestamp, body)
    parts = []
    for secret in hmac_secrets:
        digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    if signed is None and key is not None:
        signed = key.sign(content)
    if signed is not None:
        parts.append("v1a," + base64.b64encode(signed).decode())
    return " ".join(parts)


def headers(msg_id: str, timestamp: int, body: bytes, hmac_secrets: Sequence[str],
            key: Ed25519PrivateKey | None = None, *,
            signed: bytes | None = None) -> dict[str, str]:
    """Return the three webhook-* headers of one attempt (``signed``: as for :func:`sign`)."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(msg_id, timestamp, body, hmac_secrets, key,
                                      signed=signed)}


class Signatures:
    """Our key's last signatures, by (message id, timestamp): a fan-out signs one content
    once a second, not once per endpoint. The content is compared in full before reuse."""

    def __init__(self, key: Ed25519PrivateKey, keep: int = 256) -> None:
        self.key, self.keep = key, keep
        self._made: dict[tuple[str, int], tuple[bytes, bytes]] = {}

    def of(self, msg_id: str, timestamp: int, body: bytes) -> bytes:
        """Return the key's signature of the content ``(msg_id, timestamp, body)``."""
        found = self._made.get((msg_id, timestamp))
        if found is not None and found[0] == body:
            return found[1]
        signed = self.key.sign(signed_content(msg_id, timestamp, body))
        if len(self._made) >= self.keep:
            self._made.clear()  # a second's fan-outs at most; no order to keep
        self._made[msg_id, timestamp] = (body, signed)
        return signed


def matches(msg_id: str, timestamp: int, body: bytes, signature: str, secret: str) -> bool:
    """Return True when any v1 entry of ``signature`` is ours for ``secret`` (constant time)."""
    expected = hmac.new(secret_bytes(secret), signed_content(msg_id, timestamp, body),
                        hashlib.sha256).digest()
    for entry in signature.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1":
            try:
                given = base64.b64decode(value)
            except ValueError:
                continue
            if hmac.compare_digest(expected, given):
                return True
    return False
