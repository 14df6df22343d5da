"""Webhook ingress: ``POST /webhooks/fal`` — verify, persist raw, enqueue settle, answer 200.

Callbacks from our own local provider carry our signature; fal's carry fal's. Both
pass the same checks (ED25519 over id, user, timestamp and body hash; ±tolerance).
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify, request

from app import queues
from app.api import services
from app.errors import (
    InvalidInputError,
    SignatureError,
    SigningKeysUnavailable,
    TooLargeError,
    UnknownSigningKey,
)
from app.signing import fal as fal_signing
from app.signing.keys import check_url_token
from app.store import callbacks

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

def verify(body: bytes, headers: dict[str, str]) -> tuple[str, str]:
    """Return (provider request id, source) of a verified callback, else raise SignatureError.

    Our own key first (the local provider), then fal's; a key neither knows may mean fal
    rotated its keys, so they are fetched again once (rate-limited) before refusing.
    """
    svc = services()
    tolerance = svc.settings.webhook_tolerance
    own = [svc.signing_key.public_key()]
    try:
        return fal_signing.verify(body, headers, own, tolerance=tolerance), "local"
    except UnknownSigningKey:
        pass
    cache = svc.fal_keys()
    try:
        try:
            return fal_signing.verify(body, headers, cache.keys(), tolerance=tolerance), "fal"
        except UnknownSigningKey:
            pass
        return (fal_signing.verify(body, headers, cache.keys(refresh=True), tolerance=tolerance),
                "fal")
    except SigningKeysUnavailable as exc:
        raise UnknownSigningKey("the signature is not ours, and fal's published keys could "
                                "not be fetched to check it against them") from exc


def _read_at_most(size: int) -> bytes:
    """Read the request body, but never more than ``size`` bytes into memory."""
    chunks, total = [], 0
    while total < size:
        chunk = request.stream.read(min(65536, size - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


@bp.post("/fal")
def fal_callback():
    """Accept a signed callback; 200 only after it is stored, 401 when it does not verify."""
    limit = services().settings.max_webhook_bytes
    if (request.content_length or 0) > limit:
        raise TooLargeError(f"callback body over {limit} bytes")
    body = _read_at_most(limit + 1)  # a chunked body has no length to check first
    if len(body) > limit:
        raise TooLargeError(f"callback body over {limit} bytes")
    headers = {k: v for k, v in request.headers.items()}
    try:
        provider_request_id, source = verify(body, headers)
    except SignatureError as exc:
        log.warning("refused webhook callback: %s", exc)
        raise SignatureError(f"callback refused: {exc}") from exc
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise InvalidInputError("callback body is not JSON") from exc
    if not isinstance(parsed, dict):
        raise InvalidInputError("callback body must be a JSON object")
    svc = services()
    # Our fal submissions name our request in the webhook URL, with a token only we can make.
    named = request.args.get("posehook_request", "")
    if named and not check_url_token(svc.signing_key, "fal-webhook", named,
                                     request.args.get("token", "")):
        named = ""
    # Stored and its settle job queued in one round trip (the job only if the callback is new).
    job = queues.settle_writes(svc.rq, callbacks.callback_id(provider_request_id, body))
    cid, is_new = callbacks.persist(svc.redis, provider_request_id, body, headers, source,
                                    request_id=named, job=job)
    return jsonify({"ok": True, "callback_id": cid, "duplicate": not is_new})
