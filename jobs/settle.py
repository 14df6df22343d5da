"""Settle a request from a stored callback, exactly once, and announce what happened.

Settling can fail (fal's output image cannot be copied); each failure is counted on the
request, and after ``settle_tries`` the request fails with the reason, so a poisoned
output never keeps a request IN_PROGRESS or a sweep busy forever.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app import events
from app.errors import PosehookError
from app.models import Status
from app.services import Services, current
from app.store import callbacks
from app.store import requests as store
from app.store.keys import key_for_request

log = logging.getLogger(__name__)


def _error_of(payload: dict[str, Any]) -> dict[str, Any]:
    """Return our error object from a fal ERROR callback (its detail kept)."""
    detail = payload.get("payload") or payload.get("payload_error")
    message = payload.get("error") or "the provider reported an error"
    error: dict[str, Any] = {"type": "provider_error", "message": str(message)}
    if detail:
        error["detail"] = detail
    return error


def output_for(services: Services, source: str, output: dict[str, Any]) -> dict[str, Any]:
    """Return the output to keep: ours as is; fal's copied into our storage (fal provider)."""
    if source == "local":
        return output
    from app.providers.fal import copy_output

    return copy_output(services, output)


def apply(services: Services, request_id: str, payload: dict[str, Any], source: str) -> str:
    """Move a request to COMPLETED or FAILED from a fal-format payload, once; return the event."""
    r = services.redis
    now = repr(time.time())
    record = store.get(r, request_id)
    if record is None or record.status.is_terminal:
        return "ignored"
    if payload.get("status") == "OK" and isinstance(payload.get("payload"), dict):
        output = output_for(services, source, payload["payload"])
        moved = store.transition(r, request_id, (Status.IN_QUEUE, Status.IN_PROGRESS),
                                 Status.COMPLETED, {"output": output, "completed_at": now})
        event = "request.completed"
    else:
        moved = store.transition(r, request_id, (Status.IN_QUEUE, Status.IN_PROGRESS),
                                 Status.FAILED, {"error": _error_of(payload), "completed_at": now})
        event = "request.failed"
    if not moved:
        return "ignored"
    store.add_log(r, request_id, f"settled: {event.split('.')[1]}")
    events.emit(services, request_id, event)
    return event


def give_up(services: Services, request_id: str, exc: Exception) -> bool:
    """Count a failed try to settle a request; fail it once ``settle_tries`` are spent.

    Returns:
        True when the request was failed (stop trying), False to try again later.
    """
    r = services.redis
    tries = r.hincrby(key_for_request(request_id), "settle_failures", 1)
    message = exc.message if isinstance(exc, PosehookError) else f"{type(exc).__name__}: {exc}"
    log.warning("settling %s failed (try %d): %s", request_id, tries, message)
    store.add_log(r, request_id, f"could not settle (try {tries}): {message}", "WARNING")
    if tries < services.settings.settle_tries:
        return False
    reason = f"the result could not be settled after {tries} tries: {message}"
    if store.fail(r, request_id, (Status.IN_QUEUE, Status.IN_PROGRESS), "settle_failed", reason):
        events.emit(services, request_id, "request.failed")
    return True


def settle(callback_id: str) -> str:
    """Apply one stored callback; a late duplicate changes nothing."""
    svc = current()
    r = svc.redis
    cb = callbacks.get(r, callback_id)
    if cb is None:
        return "missing"
    if cb.get("settled") == "1":
        return "already settled"
    provider = "local" if cb["source"] == "local" else "fal"
    request_id = store.find_by_provider_ref(r, provider, cb["provider_request_id"])
    if request_id is None and cb.get("request_id"):
        # fal called back before its submit answer reached us: the webhook URL named us.
        request_id = cb["request_id"]
        store.link_provider_ref(r, provider, cb["provider_request_id"], request_id,
                                svc.settings.request_ttl)
        if provider == "fal":  # the id a forwarded caller's fal_webhook callback names
            store.update(r, request_id, provider_ref=cb["provider_request_id"])
    if request_id is None:
        log.warning("callback %s names unknown request %s", callback_id,
                    cb["provider_request_id"])
        callbacks.mark_settled(r, callback_id, "unmatched")
        return "unmatched"
    try:
        event = apply(svc, request_id, cb["payload"], cb["source"])
    except Exception as exc:  # noqa: BLE001 - counted, so one bad output cannot loop forever
        if not give_up(svc, request_id, exc):
            raise  # RQ retries the job; the sweeper enqueues it again after that
        event = "gave up"
    callbacks.mark_settled(r, callback_id, event)
    return event


def announce(request_id: str, event_type: str) -> str:
    """Emit an event for a request (used for started/cancelled and provider refusals)."""
    events.emit(current(), request_id, event_type)
    return event_type
