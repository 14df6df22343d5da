"""Settle a request from a stored callback, exactly once (``app.lifecycle`` announces it).

Settling can fail (fal's output image cannot be copied); each failure is counted on the
request, and after ``settle_tries`` the request fails with the reason, so a poisoned
output never keeps a request IN_PROGRESS or a sweep busy forever.
"""

from __future__ import annotations

import logging

from app import lifecycle
from app.services import current
from app.store import callbacks
from app.store import requests as store

log = logging.getLogger(__name__)


def settle(callback_id: str) -> str:
    """Apply one stored callback; a late duplicate changes nothing."""
    svc = current()
    r = svc.redis
    cb = callbacks.get(r, callback_id)
    if cb is None:
        return "missing"
    if cb.settled == "1":
        return "already settled"
    provider = "local" if cb.source == "local" else "fal"
    request_id = store.find_by_provider_ref(r, provider, cb.provider_request_id)
    if request_id is None and cb.request_id:
        # fal called back before its submit answer reached us: the webhook URL named us.
        request_id = cb.request_id
        store.link_provider_ref(r, provider, cb.provider_request_id, request_id,
                                svc.settings.request_ttl)
        if provider == "fal":  # the id a forwarded caller's fal_webhook callback names
            store.update(r, request_id, provider_ref=cb.provider_request_id)
    if request_id is None:
        log.warning("callback %s names unknown request %s", callback_id, cb.provider_request_id)
        callbacks.mark_settled(r, callback_id, "unmatched")
        return "unmatched"
    try:
        event = lifecycle.settle(svc, request_id, cb.payload, cb.source)
    except Exception as exc:  # noqa: BLE001 - counted, so one bad output cannot loop forever
        if not lifecycle.settle_failed(svc, request_id, exc):
            raise  # RQ retries the job; the sweeper enqueues it again after that
        event = "gave up"
    callbacks.mark_settled(r, callback_id, event)
    return event
