"""Hand a queued request to its provider."""

from __future__ import annotations

from app import lifecycle
from app.errors import PosehookError
from app.models import Status
from app.providers import get_provider
from app.services import current
from app.store import requests as store


def submit(request_id: str) -> str:
    """Submit a request to its provider once; when the provider refuses, FAILED says why."""
    svc = current()
    record = store.get(svc.redis, request_id)
    if record is None or record.status is not Status.IN_QUEUE:
        return "skipped"
    if record.provider_ref:
        return "already submitted"
    provider = get_provider(record.provider)
    try:
        ref = provider.submit(svc, record)
    except PosehookError as exc:
        lifecycle.fail(svc, request_id, {"type": exc.code, "message": exc.message},
                       f"provider refused the request: {exc.message}",
                       sources=(Status.IN_QUEUE,))
        return "failed"
    if not ref:
        store.add_log(svc.redis, request_id, "handed to the provider; waiting for its callback")
        return "awaiting"
    store.add_log(svc.redis, request_id, f"submitted to the {provider.name} provider")
    return ref
