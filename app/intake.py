"""Accept a validated pose input: check the image URL, then ``lifecycle.accept`` it.

Shared by the native API and the fal-compatible surface, so both make the same records.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from app import lifecycle
from app.errors import ConflictError, TooManyRequestsError
from app.models import Request, Status
from app.services import Services


def body_hash(payload: Mapping[str, Any]) -> str:
    """Return a stable hash of a request body (for idempotency keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def prepare_input(services: Services, input: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse a photo or video URL we would never load; keep a data URI's bytes as one of
    our files, once checked (a photo sniffed, a video's header against the video limits).

    A data URI is stored once here (Redis keeps only its URL), so records stay small and
    a provider that needs a fetchable URL can be given one.
    """
    from app.images import parse_data_uri, sniff_input, upload_limit, validate_image_url
    from app.outbound import Guard
    from app.retention import keep_upload
    from app.video import byte_limit

    settings = services.settings
    prepared = dict(input)
    field, url = input_url(prepared)
    video = "video_url" in prepared
    if not url.startswith("data:"):
        validate_image_url(url, settings, Guard.from_settings(settings), services.storage, field,
                           byte_limit(settings) if video else None)
        return prepared
    # A video sent in the body is held to the smaller of the body's and a video's limits.
    limit = upload_limit(settings)
    if video:
        limit = min(limit, byte_limit(settings), key=lambda each: each.bytes)
    data, _ = parse_data_uri(url, limit, field, "video" if video else "image")
    if video:  # stored as what the bytes are, as an image is (never as the URI says)
        from app.video import media_type, probe

        content_type = media_type(probe(data, settings))
    else:
        content_type = sniff_input(data, settings)
    stored = services.storage.put(data, content_type, "input")
    keep_upload(services, stored)
    prepared[field.removeprefix("input.")] = stored.url
    return prepared


def input_url(input: Mapping[str, Any]) -> tuple[str, str]:
    """Return (the field, the URL) of an input's file: its ``video_url`` or ``image_url``."""
    name = "video_url" if "video_url" in input else "image_url"
    return f"input.{name}", input[name]


def admit(services: Services, key_id: str) -> None:
    """Refuse a new request when its key is over its rate or the queue is over a bound.

    Raises:
        TooManyRequestsError: with the seconds to wait (the key's bucket refills, or the
            excess drains at the rate requests have been finishing over the last minute).
    """
    from app.store import admission, tracking

    settings, r = services.settings, services.redis
    if settings.rate_per_key > 0:
        wait = admission.take_token(r, key_id, settings.rate_per_key, settings.rate_burst)
        if wait > 0:
            raise TooManyRequestsError(
                f"this API key submits faster than its limit of {settings.rate_per_key:g} "
                f"requests per second (bursts of {settings.rate_burst}); slow down",
                retry_after=max(1, math.ceil(wait)))
    for bound, queued, whose in (
            (settings.max_queued_per_key,
             lambda: tracking.count_for_key(r, key_id, Status.IN_QUEUE.value), "yours"),
            (settings.max_queued, lambda: tracking.counts(r)["queued"], "everyone's")):
        if bound and (now := queued()) >= bound:
            rate = admission.drain_rate(r)
            wait = (now - bound + 1) / rate if rate > 0 else MAX_RETRY_AFTER
            raise TooManyRequestsError(
                f"{now} requests ({whose}) are queued, the limit is {bound}; try again "
                "when some have finished", retry_after=min(MAX_RETRY_AFTER,
                                                          max(1, math.ceil(wait))))


MAX_RETRY_AFTER = 300
"""The longest wait a 429 asks for (when nothing has drained lately, this)."""


def accept(
    services: Services,
    *,
    key_id: str,
    input: Mapping[str, Any],
    webhook_url: str = "",
    fal_webhook: str = "",
    idempotency_key: str = "",
    webhook_events: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Request, bool]:
    """Store a new request and enqueue its submission; return (request, created).

    A known Idempotency-Key is answered (the first request, or a 409) before the input is
    checked or stored; a data URI's copy that no new request took is deleted again.
    """
    settings = services.settings
    from app.outbound import Guard

    for field, url in (("webhook_url", webhook_url), ("fal_webhook", fal_webhook)):
        if url:
            Guard.from_settings(settings).check_url(url, field)
    hashed = body_hash({"input": input, "webhook_url": webhook_url,
                        "webhook_events": webhook_events})
    if idempotency_key:  # a replay (or a conflict) is answered before anything is stored,
        from app.store.idempotency import replay  # and before admission: it makes nothing

        if (known := replay(services.redis, key_id, idempotency_key, hashed)) is not None:
            return known, False
    admit(services, key_id)
    prepared = prepare_input(services, input)
    field, url = input_url(prepared)
    # A data URI stored just now is an upload (upload TTL) until its request exists; one of
    # our files named by URL is kept as long as a request now (refused if it expired just
    # now; should the accept then fail, it is still gone one request TTL from now).
    from app.retention import claim_input, drop_unused

    fresh = url != input_url(input)[1]
    claimed = None if fresh else claim_input(services, url, "request", time.time(), field)
    try:
        request, created = lifecycle.accept(
            services, key_id=key_id, input=prepared, provider=settings.provider,
            webhook_url=webhook_url, fal_webhook=fal_webhook, idempotency_key=idempotency_key,
            body_hash=hashed, idempotency_ttl=settings.idempotency_ttl,
            ttl=settings.request_ttl,
            # Stored with the record, so it already filters the first event.
            extra={**({"webhook_events": webhook_events} if webhook_events else {}),
                   **(extra or {})} or None,
        )
    except ConflictError:  # the key was taken meanwhile with another body: nothing made
        if fresh:
            drop_unused(services, url)
        raise
    except Exception:  # the request may exist all the same: keep its input as long
        if fresh:
            claim_input(services, url, "request", time.time(), field)
        raise
    if created and (fresh or claimed is not None):
        claim_input(services, url, f"request:{request.id}", request.created_at, field)
    elif fresh:  # another request with this key was made meanwhile: its copy is the one
        drop_unused(services, url)
    return request, created
