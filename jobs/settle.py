"""Settle a request from a stored callback, exactly once, and announce what happened."""

from __future__ import annotations

import logging
import time
from typing import Any

from app import events
from app.models import Status
from app.services import Services, current
from app.store import callbacks
from app.store import requests as store

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


def settle(callback_id: str) -> str:
    """Apply one callback: COMPLETED or FAILED by compare-and-set; a late duplicate changes nothing."""
    svc = current()
    r = svc.redis
    cb = callbacks.get(r, callback_id)
    if cb is None:
        return "missing"
    if cb.get("settled") == "1":
        return "already settled"
    payload = cb["payload"]
    provider = "local" if cb["source"] == "local" else "fal"
    request_id = store.find_by_provider_ref(r, provider, cb["provider_request_id"])
    if request_id is None:
        log.warning("callback %s names unknown request %s", callback_id,
                    cb["provider_request_id"])
        callbacks.mark_settled(r, callback_id, "unmatched")
        return "unmatched"
    now = repr(time.time())
    if payload.get("status") == "OK" and isinstance(payload.get("payload"), dict):
        output = output_for(svc, cb["source"], payload["payload"])
        moved = store.transition(r, request_id, (Status.IN_QUEUE, Status.IN_PROGRESS),
                                 Status.COMPLETED, {"output": output, "completed_at": now})
        event = "request.completed"
    else:
        error = _error_of(payload)
        moved = store.transition(r, request_id, (Status.IN_QUEUE, Status.IN_PROGRESS),
                                 Status.FAILED, {"error": error, "completed_at": now})
        event = "request.failed"
    callbacks.mark_settled(r, callback_id, event if moved else "ignored")
    if not moved:
        return "ignored"
    store.add_log(r, request_id, f"settled: {event.split('.')[1]}")
    events.emit(svc, request_id, event)
    return event


def announce(request_id: str, event_type: str) -> str:
    """Emit an event for a request (used for started/cancelled and provider refusals)."""
    events.emit(current(), request_id, event_type)
    return event_type
