"""Our ED25519 key pair and the JWKS document that publishes its public half.

The private key comes from POSEHOOK_SIGNING_KEY, or is generated once and kept in
Redis (SET NX), so every web and worker process on every host signs with the same key.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from redis import Redis

from app.store import clock


def b64url(data: bytes) -> str:
    """Return unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Decode base64url text with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_private(key: Ed25519PrivateKey) -> bytes:
    """Return the 32 raw bytes of a private key."""
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def raw_public(key: Ed25519PublicKey) -> bytes:
    """Return the 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """Read a private key given as PEM or as base64 of the 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("POSEHOOK_SIGNING_KEY must be an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def load_signing_key(r: Redis, configured: str = "") -> Ed25519PrivateKey:
    """Return our signing key: the configured one, else the shared one in Redis."""
    if configured:
        return parse_private_key(configured)
    fresh = base64.b64encode(raw_private(Ed25519PrivateKey.generate())).decode()
    return parse_private_key(clock.shared_signing_key(r, fresh))


def key_id(public: Ed25519PublicKey) -> str:
    """Return a stable id for a public key (first 16 hex of its SHA-256)."""
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def jwk(public: Ed25519PublicKey) -> dict[str, Any]:
    """Return one public key as a JWK (OKP / Ed25519)."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw_public(public)),
            "kid": key_id(public), "use": "sig", "alg": "EdDSA"}


def jwks(*publics: Ed25519PublicKey) -> dict[str, Any]:
    """Return a JWKS document with these public keys."""
    return {"keys": [jwk(p) for p in publics]}


def public_keys_from_jwks(document: Any) -> list[Ed25519PublicKey]:
    """Return the Ed25519 keys of a JWKS document, skipping anything else."""
    out = []
    for entry in (document or {}).get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(entry, dict) or entry.get("crv") != "Ed25519" or "x" not in entry:
            continue
        try:
            out.append(Ed25519PublicKey.from_public_bytes(b64url_decode(entry["x"])))
        except ValueError:
            continue
    return out


def url_token(key: Ed25519PrivateKey, purpose: str, value: str) -> str:
    """Return an HMAC token binding ``value`` to us (for ids we put in URLs we hand out)."""
    import hmac

    secret = hashlib.sha256(raw_private(key) + b"posehook-url-token").digest()
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def check_url_token(key: Ed25519PrivateKey, purpose: str, value: str, token: str) -> bool:
    """Return True when ``token`` is ours for ``value`` (constant-time compare)."""
    import hmac

    return hmac.compare_digest(url_token(key, purpose, value), token or "")
