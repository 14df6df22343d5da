"""Deliver one event to one endpoint: a signed POST, every attempt logged, retries scheduled.

Success is 2xx only; 3xx is a failure and never followed; 410 disables the subscription;
429/502/503/504 and timeouts wait at least ``delivery_overload_delay``; Retry-After is
honoured within [scheduled, 2 × scheduled]; delays get ±jitter (``app.backoff``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from app import events, outbound, queues
from app.backoff import next_delay
from app.errors import BlockedURLError
from app.services import Services, current
from app.signing import fal as fal_signing
from app.signing import standard
from app.store import deliveries, subscriptions
from app.store.deliveries import FAILED, SUCCEEDED, Delivery
from app.store.keys import key_for_delivery_lock

log = logging.getLogger(__name__)

MAX_READ = 64 * 1024
KEEP = 20_000
_clients: dict[tuple[outbound.Guard, float, float], httpx.Client] = {}


def _client(services: Services) -> httpx.Client:
    """Return this process's pooled, guarded client."""
    settings = services.settings
    key = (outbound.Guard.from_settings(settings), settings.delivery_timeout,
           settings.delivery_connect_timeout)
    if key not in _clients:
        _clients[key] = outbound.client(key[0], timeout=key[1], connect_timeout=key[2])
    return _clients[key]


def _headers(services: Services, delivery: Delivery, secrets: list[str] | None,
             now: int) -> dict[str, str]:
    """Return the signed headers of one attempt for the delivery's kind."""
    body = delivery.body.encode()
    # identity: a compressed answer could expand far past what we mean to read.
    base = {"Content-Type": "application/json", "User-Agent": outbound.USER_AGENT,
            "Accept-Encoding": "identity"}
    if delivery.kind == "fal":
        return {**base, **fal_signing.sign(services.signing_key, delivery.request_id,
                                           delivery.key_id, body, now=now)}
    if secrets is None:
        secrets = [subscriptions.key_secret(services.redis, delivery.key_id)]
    return {**base, **standard.headers(delivery.event_id, now, body, secrets,
                                       services.signing_key)}


def _post(services: Services, delivery: Delivery, url: str,
          secrets: list[str] | None) -> dict[str, Any]:
    """Make one attempt, answer included, within ``delivery_timeout``; never raises.

    Returns:
        The attempt's log entry; ``error_class`` is None only for a 2xx read in time.
    """
    now = time.time()
    started = time.monotonic()
    deadline = started + services.settings.delivery_timeout
    entry: dict[str, Any] = {"at": now, "url": url, "status_code": None, "error_class": None,
                             "response": "", "retry_after": None}
    try:
        headers = _headers(services, delivery, secrets, int(now))
        with _client(services).stream("POST", url, content=delivery.body.encode(),
                                      headers=headers) as answer:
            entry["status_code"] = answer.status_code
            entry["retry_after"] = (answer.headers.get("Retry-After") or "")[:100] or None
            received = bytearray()
            # httpx times each read, not the whole answer: a trickling body stops here.
            for chunk in answer.iter_raw():
                received += chunk
                if time.monotonic() > deadline:
                    entry["error_class"] = "timeout"
                    break
                if len(received) >= MAX_READ:
                    break
            entry["response"] = bytes(received[:KEEP]).decode("utf-8", "replace")
            if entry["error_class"] is None and not answer.is_success:
                entry["error_class"] = "redirect" if answer.is_redirect else "http_status"
    except BlockedURLError:
        entry["error_class"] = "ssrf_blocked"
    except httpx.TimeoutException:
        entry["error_class"] = "timeout"
    except httpx.ConnectError:
        entry["error_class"] = "connect"
    except httpx.HTTPError as exc:
        entry["error_class"] = type(exc).__name__
    entry["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return entry


def _disable(services: Services, subscription_id: str, reason: str) -> None:
    """Disable a subscription and tell the key's other subscriptions (once)."""
    disabled = subscriptions.disable(services.redis, subscription_id, reason)
    if disabled is None:  # deleted meanwhile, or another attempt disabled it first
        return
    log.warning("subscription %s disabled: %s", subscription_id, reason)
    for other in subscriptions.list_for_key(services.redis, disabled.key_id):
        if other.id != subscription_id and other.enabled:
            events.emit_to_subscription(services, other, "endpoint.disabled",
                                        {"subscription_id": subscription_id,
                                         "url": disabled.url, "reason": reason})


def _schedule(services: Services, delivery: Delivery, delay: float) -> None:
    """Queue the next attempt on the retry queue (sub-second delays: tests' schedules)."""
    delivery.next_attempt_at = time.time() + delay
    deliveries.save(services.redis, delivery)
    job_id = f"deliver-{delivery.id}-{len(delivery.attempts)}"
    if delay < 1:
        time.sleep(delay)
        delay = 0
    queues.enqueue_delivery(services.rq, services.settings, delivery.id, job_id, retry=True,
                            delay=delay)


def deliver(delivery_id: str) -> str:
    """Make the next attempt of a pending delivery; schedule the one after if it fails."""
    svc = current()
    r = svc.redis
    # Longer than RQ lets this job run, so no second attempt starts beside it; a killed
    # worker's lease lapses and the sweeper sends again.
    token = deliveries.lease(r, delivery_id, svc.settings.delivery_lease)
    if token is None:
        return "busy"
    try:
        # Read under the lease: no other attempt changes the delivery from here on.
        delivery = deliveries.get(r, delivery_id)
        if delivery is None or delivery.status != deliveries.PENDING:
            return "nothing to do"
        sub, url, secrets = None, delivery.url, None
        if delivery.kind == "subscription":
            sub = subscriptions.get(r, delivery.subscription_id)
            if sub is None or not sub.enabled:
                delivery.status = FAILED
                delivery.attempts.append({"at": time.time(), "url": url, "status_code": None,
                                          "error_class": "subscription_disabled",
                                          "response": "", "duration_ms": 0})
                deliveries.save(r, delivery)
                return "subscription disabled"
            # The subscription's URL now, not when the event was made: a PATCH reaches
            # retries, redeliveries and recoveries (the SSRF guard checks it as it connects).
            url, secrets = sub.url, sub.live_secrets(time.time())
        entry = _post(svc, delivery, url, secrets)
        delivery.attempts.append(entry)
        code = entry["status_code"]
        if entry["error_class"] is None:  # a 2xx, read within the deadline
            delivery.status, delivery.next_attempt_at = SUCCEEDED, None
            deliveries.save(r, delivery)
            if sub is not None:
                # Applied to the stored state: changes made during the attempt stay.
                subscriptions.mark_healthy(r, sub.id)
            return "delivered"
        if code == 410 and entry["error_class"] == "http_status" and sub is not None:
            delivery.status, delivery.next_attempt_at = FAILED, None
            deliveries.save(r, delivery)
            _disable(svc, sub.id, "the endpoint answered 410 Gone")
            return "gone"
        if sub is not None:
            now, window = time.time(), svc.settings.delivery_disable_after
            fresh = subscriptions.mark_failing(r, sub.id, now, window)
            if fresh is not None and now - (fresh.failing_since or now) >= window:
                delivery.status, delivery.next_attempt_at = FAILED, None
                deliveries.save(r, delivery)
                _disable(svc, sub.id, f"every delivery failed for {window} seconds")
                return "disabled"
        delay = next_delay(svc.settings, delivery.attempts)
        if delay is None:
            delivery.status, delivery.next_attempt_at = FAILED, None
            deliveries.save(r, delivery)
            return "exhausted"
        _schedule(svc, delivery, delay)
        return f"retry in {delay:.3f}s"
    finally:
        deliveries.release(r, delivery_id, token)


def sweep_deliveries(services: Services, now: float) -> int:
    """Enqueue again pending deliveries overdue by 5 s or more (lost jobs, dead workers)."""
    found = [d for d in deliveries.overdue(services.redis, now - 5)
             if not services.redis.exists(key_for_delivery_lock(d))]
    for delivery_id in found:
        queues.enqueue_delivery(services.rq, services.settings, delivery_id,
                                f"deliver-{delivery_id}-sweep-{int(now)}", retry=True)
    return len(found)
