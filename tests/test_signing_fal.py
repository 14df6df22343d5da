"""fal-style callback signatures: what verifies and every way one is refused."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.errors import SignatureError
from app.signing import fal
from app.signing.keys import jwks, public_keys_from_jwks

BODY = b'{"request_id":"r1","status":"OK","payload":{}}'


@pytest.fixture
def key():
    """A fresh ED25519 key."""
    return Ed25519PrivateKey.generate()


def test_signed_callback_verifies_and_returns_the_request_id(key):
    headers = fal.sign(key, "r1", "u1", BODY)
    assert fal.verify(BODY, headers, [key.public_key()]) == "r1"


def test_message_is_id_user_timestamp_and_body_hash_on_lines():
    import hashlib

    expected = f"r1\nu1\n123\n{hashlib.sha256(BODY).hexdigest()}".encode()
    assert fal.message("r1", "u1", "123", BODY) == expected


def test_any_key_of_the_set_verifies(key):
    other = Ed25519PrivateKey.generate()
    headers = fal.sign(key, "r1", "u1", BODY)
    assert fal.verify(BODY, headers, [other.public_key(), key.public_key()]) == "r1"


@pytest.mark.parametrize("change", ["body", "request_id", "user_id", "timestamp", "signature"])
def test_a_changed_part_is_refused(key, change):
    headers = fal.sign(key, "r1", "u1", BODY)
    body = BODY
    if change == "body":
        body = BODY.replace(b"OK", b"KO")
    elif change == "request_id":
        headers[fal.HEADER_REQUEST_ID] = "r2"
    elif change == "user_id":
        headers[fal.HEADER_USER_ID] = "u2"
    elif change == "timestamp":
        headers[fal.HEADER_TIMESTAMP] = str(int(headers[fal.HEADER_TIMESTAMP]) - 1)
    else:
        headers[fal.HEADER_SIGNATURE] = "00" * 64
    with pytest.raises(SignatureError):
        fal.verify(body, headers, [key.public_key()])


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_timestamps_outside_five_minutes_are_refused(key, skew):
    headers = fal.sign(key, "r1", "u1", BODY, now=time.time() + skew)
    with pytest.raises(SignatureError, match="timestamp"):
        fal.verify(BODY, headers, [key.public_key()])


def test_missing_header_is_refused(key):
    headers = fal.sign(key, "r1", "u1", BODY)
    del headers[fal.HEADER_SIGNATURE]
    with pytest.raises(SignatureError, match="missing"):
        fal.verify(BODY, headers, [key.public_key()])


def test_headers_are_matched_without_case(key):
    headers = {k.lower(): v for k, v in fal.sign(key, "r1", "u1", BODY).items()}
    assert fal.verify(BODY, headers, [key.public_key()]) == "r1"


def test_jwks_round_trip(key):
    assert [k.public_bytes_raw() for k in public_keys_from_jwks(jwks(key.public_key()))] == [
        key.public_key().public_bytes_raw()]


def test_jwks_cache_refetches_at_most_once_a_minute_and_fails_closed():
    calls = []
    keyset = [jwks(Ed25519PrivateKey.generate().public_key())]

    def fetch():
        calls.append(1)
        if not keyset:
            raise OSError("unreachable")
        return keyset[0]

    cache = fal.JwksCache(fetch, max_age=86400, min_refresh=60)
    assert len(cache.keys()) == 1
    assert len(cache.keys(refresh=True)) == 1  # within a minute: no second fetch
    assert len(calls) == 1

    empty = fal.JwksCache(lambda: (_ for _ in ()).throw(OSError("down")))
    with pytest.raises(SignatureError, match="unavailable"):
        empty.keys()
