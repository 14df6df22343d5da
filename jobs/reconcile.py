"""Settle fal-backed requests whose callback never came, by asking fal (run by the sweeper).

A request sent to fal holds a lease of ``reconcile_after`` seconds; when it runs out
without a terminal callback, fal's status (and result) API decides. A submission whose
answer was lost and that no callback ever named fails after the same time, with the reason,
and so does a request fal no longer knows (404). One request that cannot be settled (its
output cannot be copied) is tried again later and fails after ``settle_tries``; it never
stops the others.
"""

from __future__ import annotations

import logging

from app import fal_protocol, lifecycle
from app.errors import ProviderError
from app.models import Status
from app.providers.fal import FalProvider, FalRequestUnknown
from app.services import Services, current
from app.store import requests as store
from app.store import tracking

log = logging.getLogger(__name__)


def _poll(services: Services, request_id: str, ref: str, now: float) -> str:
    """Ask fal about one request; settle it when fal has finished, else extend the lease."""
    r = services.redis
    provider = FalProvider()
    later = _later(services, now)
    try:
        state = provider.status(services, ref)
        if state.get("status") != "COMPLETED":
            tracking.extend_lease(r, request_id, later)
            return "still running"
        code, body = provider.result(services, ref)
    except FalRequestUnknown as exc:
        # Waiting longer cannot help: fal will never finish a request it does not have.
        code, body = 404, {"detail": str(exc)}
    except ProviderError as exc:
        log.warning("reconciling %s: %s", request_id, exc)
        tracking.extend_lease(r, request_id, later)
        return "fal unreachable"
    event = lifecycle.settle(services, request_id, fal_protocol.status_payload(code, body), "fal")
    if event != "ignored":
        store.add_log(r, request_id, "no callback came; settled from fal's status API",
                      "WARNING")
    return event


def _later(services: Services, now: float) -> float:
    """Return when to ask fal again about a request that could not be settled now."""
    return now + max(30.0, services.settings.reconcile_after / 2)


def reconcile(services: Services, now: float) -> int:
    """Poll fal for every fal request past its lease; fail lost submissions; return how many."""
    r = services.redis
    count = 0
    for request_id in tracking.expired_leases(r, now):
        record = store.get(r, request_id)
        if record is None or record.provider != "fal":
            continue
        if record.status is not Status.IN_PROGRESS:
            tracking.forget_lease(r, request_id)
            continue
        try:
            _poll(services, request_id, record.provider_ref, now)
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the others
            log.exception("reconciling %s failed", request_id)
            if not lifecycle.settle_failed(services, request_id, exc):
                tracking.extend_lease(r, request_id, _later(services, now))
        count += 1
    for request_id in tracking.stale_queued(r, now - services.settings.reconcile_after):
        record = store.get(r, request_id)
        if (record is None or record.provider != "fal" or record.provider_ref
                or record.fal_submitted_at is None):
            continue
        if record.fal_submitted_at > now - services.settings.reconcile_after:
            continue
        why = record.fal_submit_lost or "fal's answer to our submission was lost"
        reason = f"{why} and no callback came in {services.settings.reconcile_after} s"
        lifecycle.fail(services, request_id, {"type": "provider_lost", "message": reason},
                       sources=(Status.IN_QUEUE,), now=now)
        count += 1
    return count


def reconcile_overdue(now: float) -> int:
    """The sweeper's pass (its own job): reconcile fal requests overdue at ``now``."""
    return reconcile(current(), now)


def cancel_at_fal(request_id: str) -> str:
    """Tell fal about a cancel it could not take when it was asked; raise to be retried."""
    services = current()
    record = store.get(services.redis, request_id)
    if record is None or not record.provider_ref:
        return "nothing to cancel at fal"
    code = FalProvider().send_cancel(services, record)
    if code in (200, 202, 400, 404):  # cancelled, or fal has finished or forgotten it
        store.add_log(services.redis, request_id, f"fal answered the cancel with {code}")
        return f"fal answered {code}"
    raise ProviderError(f"fal answered the cancel with {code}; trying again")
