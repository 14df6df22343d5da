"""Accept a validated pose input: check the image URL, then ``lifecycle.accept`` it.

Shared by the native API and the fal-compatible surface, so both make the same records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from app import lifecycle
from app.models import Request
from app.services import Services


def body_hash(payload: Mapping[str, Any]) -> str:
    """Return a stable hash of a request body (for idempotency keys)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def prepare_input(services: Services, input: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse an image URL we would never load; keep a data URI's bytes as one of our files.

    A data URI is stored once here (Redis keeps only its URL), so records stay small and
    a provider that needs a fetchable URL can be given one.
    """
    from app.images import parse_data_uri, sniff_image, validate_image_url
    from app.outbound import Guard

    settings = services.settings
    prepared = dict(input)
    url = prepared["image_url"]
    if url.startswith("data:"):
        data, _ = parse_data_uri(url, max_bytes=settings.max_upload_bytes)
        content_type, _, _ = sniff_image(data, max_pixels=settings.max_pixels)
        stored = services.storage.put(data, content_type, "input")
        prepared["image_url"] = stored.url
        return prepared
    validate_image_url(url, settings, Guard.from_settings(settings), services.storage)
    return prepared


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
    """Store a new request and enqueue its submission; return (request, created)."""
    settings = services.settings
    from app.outbound import Guard

    for field, url in (("webhook_url", webhook_url), ("fal_webhook", fal_webhook)):
        if url:
            Guard.from_settings(settings).check_url(url, field)
    hashed = body_hash({"input": input, "webhook_url": webhook_url,
                        "webhook_events": webhook_events})
    input = prepare_input(services, input)
    return lifecycle.accept(
        services, key_id=key_id, input=input, provider=settings.provider,
        webhook_url=webhook_url, fal_webhook=fal_webhook, idempotency_key=idempotency_key,
        body_hash=hashed, idempotency_ttl=settings.idempotency_ttl, ttl=settings.request_ttl,
        # Stored with the record, so it already filters the first event.
        extra={**({"webhook_events": webhook_events} if webhook_events else {}),
               **(extra or {})} or None,
    )

