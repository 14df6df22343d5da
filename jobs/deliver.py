"""Deliver one event to one endpoint: a signed POST, every attempt logged, retries scheduled.

Success is 2xx only; 3xx is a failure and never followed; 410 disables the subscription;
429/502/503/504 and timeouts wait at least ``delivery_overload_delay``; Retry-After is
honoured within [scheduled, 2 × scheduled]; delays get ±jitter (``app.backoff``).

One attempt at a time: the job takes the delivery's lease (a lock owned by a token, longer
than the job may run) before it reads the delivery, and logs an ``in_progress`` attempt
before it sends. If the worker dies, that entry stays; the sweeper turns it into
``worker_lost`` and counts it against the schedule, so a delivery that keeps killing its
worker ends as failed instead of being retried forever.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
from rq.timeouts import BaseTimeoutException

from app import events, outbound, queues
from app.backoff import next_delay
from app.errors import BlockedURLError
from app.models import Attempt, Delivery, Subscription, Trigger
from app.services import Services, current
from app.signing import fal as fal_signing
from app.signing import standard
from app.store import deliveries, subscriptions
from app.store.deliveries import FAILED, PENDING, SUCCEEDED

log = logging.getLogger(__name__)

MAX_READ = 64 * 1024
KEEP = 20_000
IN_PROGRESS, WORKER_LOST = "in_progress", "worker_lost"
EARLY = 2.0
"""Seconds before its due time a job may still attempt (RQ schedules to the whole second)."""
def _client(services: Services) -> httpx.Client:
    """Return this process's pooled, guarded client."""
    settings = services.settings
    key = (outbound.Guard.from_settings(settings), settings.delivery_timeout,
           settings.delivery_connect_timeout)
    return services.client(("deliver", *key), lambda: outbound.client(
        key[0], timeout=key[1], connect_timeout=key[2]))


def _headers(services: Services, delivery: Delivery, secrets: list[str] | None,
             now: int) -> dict[str, str]:
    """Return the signed headers of one attempt for the delivery's kind."""
    body = delivery.body.encode()
    # identity: a compressed answer could expand far past what we mean to read.
    base = {"Content-Type": "application/json", "User-Agent": outbound.USER_AGENT,
            "Accept-Encoding": "identity"}
    if delivery.kind == "fal":
        # The header names the request as the body does (fal's id for forwarded requests).
        caller_id = json.loads(body)["request_id"]
        return {**base, **fal_signing.sign(services.signing_key, caller_id, delivery.key_id,
                                           body, now=now)}
    if secrets is None:
        secrets = [subscriptions.key_secret(services.redis, delivery.key_id)]
    return {**base, **standard.headers(delivery.event_id, now, body, secrets,
                                       services.signing_key)}


def _post(services: Services, delivery: Delivery, url: str,
          secrets: list[str] | None) -> dict[str, Any]:
    """Make one attempt, answer included, within ``delivery_timeout``; never raises.

    Returns:
        The outcome to log: status_code, error_class, response, retry_after, duration_ms.
    """
    started = time.monotonic()
    deadline = started + services.settings.delivery_timeout
    result: dict[str, Any] = {"status_code": None, "error_class": None, "response": "",
                              "retry_after": None}
    try:
        headers = _headers(services, delivery, secrets, int(time.time()))
        with _client(services).stream("POST", url, content=delivery.body.encode(),
                                      headers=headers) as answer:
            result["status_code"] = answer.status_code
            result["retry_after"] = (answer.headers.get("Retry-After") or "")[:100] or None
            received = bytearray()
            # httpx times each read, not the whole answer: a trickling body stops here.
            for chunk in answer.iter_raw():
                received += chunk
                if time.monotonic() > deadline:
                    result["error_class"] = "timeout"
                    break
                if len(received) >= MAX_READ:
                    break
            result["response"] = bytes(received[:KEEP]).decode("utf-8", "replace")
            if result["error_class"] is None and not answer.is_success:
                result["error_class"] = "redirect" if answer.is_redirect else "http_status"
    except BlockedURLError:
        result["error_class"] = "ssrf_blocked"
    except httpx.TimeoutException:
        result["error_class"] = "timeout"
    except httpx.ConnectError:
        result["error_class"] = "connect"
    except httpx.HTTPError as exc:
        result["error_class"] = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a bug, or RQ's job timeout, is still an attempt
        log.exception("delivery %s: the attempt failed unexpectedly", delivery.id)
        timed_out = isinstance(exc, BaseTimeoutException)
        result.update(error_class="timeout" if timed_out else "internal_error",
                      response=type(exc).__name__)
    result["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _finish(services: Services, delivery: Delivery, status: str) -> None:
    """Store the delivery's final state: it leaves the pending and due sets."""
    delivery.status, delivery.next_attempt_at = status, None
    deliveries.save(services.redis, delivery)


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
    if delay < 1:
        time.sleep(delay)
        delay = 0
    queues.enqueue_delivery(services.rq, services.settings, delivery.id,
                            attempt=len(delivery.attempts), retry=True, delay=delay)


def _mark_lost(delivery: Delivery) -> bool:
    """Call attempts left in progress by a dead worker lost; return True if there were any.

    Only a holder of the delivery's lease may call this: then no attempt is under way.
    """
    lost = [a for a in delivery.attempts if a.get("error_class") == IN_PROGRESS]
    for entry in lost:
        entry.update(error_class=WORKER_LOST, response="the worker stopped during the attempt")
    return bool(lost)


def _conclude(services: Services, delivery: Delivery, sub: Subscription | None,
              entry: dict[str, Any]) -> str:
    """Store the attempt's outcome; disable, forgive or schedule as it says."""
    if entry["error_class"] is None:  # a 2xx, read within the deadline
        _finish(services, delivery, SUCCEEDED)
        if sub is not None:
            subscriptions.mark_healthy(services.redis, sub.id)
        return "delivered"
    if entry["status_code"] == 410 and entry["error_class"] == "http_status" and sub is not None:
        _finish(services, delivery, FAILED)
        _disable(services, sub.id, "the endpoint answered 410 Gone")
        return "gone"
    if sub is not None:
        now, window = time.time(), services.settings.delivery_disable_after
        fresh = subscriptions.mark_failing(services.redis, sub.id, now, window)
        if fresh is not None and now - (fresh.failing_since or now) >= window:
            _finish(services, delivery, FAILED)
            _disable(services, sub.id, f"every delivery failed for {window} seconds")
            return "disabled"
    delay = next_delay(services.settings, delivery.attempts)
    if delay is None:
        _finish(services, delivery, FAILED)
        return "exhausted"
    _schedule(services, delivery, delay)
    return f"retry in {delay:.3f}s"


def _attempt(services: Services, delivery: Delivery, lease_until: float,
             trigger: Trigger) -> str:
    """Log the attempt as in progress, make it, and conclude (the caller holds the lease)."""
    _mark_lost(delivery)
    entry: Attempt = {"at": time.time(), "url": delivery.url, "trigger": trigger,
                      "status_code": None, "error_class": IN_PROGRESS, "response": "",
                      "retry_after": None, "duration_ms": 0}
    delivery.attempts.append(entry)
    # Logged before anything else can fail: every run counts against the schedule.
    deliveries.save(services.redis, delivery, due_at=lease_until)
    sub, secrets = None, None
    if delivery.kind == "subscription":
        sub = subscriptions.get(services.redis, delivery.subscription_id)
        if sub is None or not sub.enabled:
            entry.update(error_class="subscription_disabled", response="")
            _finish(services, delivery, FAILED)
            return "subscription disabled"
        # The subscription's URL now, not when the event was made: a PATCH reaches retries.
        entry["url"], secrets = sub.url, sub.live_secrets(time.time())
    entry.update(_post(services, delivery, entry["url"], secrets))
    return _conclude(services, delivery, sub, entry)


def deliver(delivery_id: str, trigger: Trigger = "scheduled") -> str:
    """Make the next attempt of a pending delivery; schedule the one after if it fails.

    ``trigger`` says what enqueued it (the schedule, a redeliver, the sweeper); the attempt
    log keeps it.
    """
    svc = current()
    r = svc.redis
    token = deliveries.lease(r, delivery_id, svc.settings.delivery_lease)
    if token is None:
        return "busy"
    try:
        # Read under the lease: no other attempt changes the delivery from here on.
        delivery = deliveries.get(r, delivery_id)
        if delivery is None or delivery.status != PENDING:
            return "nothing to do"
        if (delivery.next_attempt_at or 0) > time.time() + EARLY:
            deliveries.save(r, delivery)  # due again when scheduled, not when our lease ends
            return "not due"  # a duplicate job (the sweeper's); the scheduled one comes later
        return _attempt(svc, delivery, time.time() + svc.settings.delivery_lease, trigger)
    finally:
        deliveries.release(r, delivery_id, token)


def deliver_all(items: list[list[str]]) -> str:
    """Send a fan-out's first attempts side by side (``[delivery id, endpoint]`` each).

    The delivery worker's sender outlives the job, which hands them over and returns: the
    next event's start while a slow endpoint still answers. Elsewhere the job waits for
    them. What a full lane cannot take is queued again for a second later."""
    svc = current()
    # Not due while the sender holds them: the sweeper waits as it would for a lease.
    deliveries.hold(svc.redis, [i for i, _ in items], time.time() + svc.settings.delivery_lease)
    futures, over = svc.sender(deliver).submit((i, e) for i, e in items)
    if over:
        left = set(over)
        queues.enqueue_deliveries(svc.rq, svc.settings,
                                  [(i, e) for i, e in items if i in left], delay=1)
    if not svc.sender(deliver).detached:
        for future in futures:
            future.result()
    return f"{len(futures)} taken, {len(over)} later"


def _needs_attempt(services: Services, delivery_id: str) -> bool:
    """Return True if an overdue delivery should be attempted again (caller holds the lease).

    An attempt a dead worker left in progress counts: if it was the last one the schedule
    allows, the delivery fails here instead of being retried forever.
    """
    r = services.redis
    delivery = deliveries.get(r, delivery_id)
    if delivery is None:
        deliveries.forget(r, delivery_id)
        return False
    if delivery.status != PENDING:
        deliveries.save(r, delivery)  # leaves the due set it should not be in
        return False
    if _mark_lost(delivery):
        if next_delay(services.settings, delivery.attempts) is None:
            _finish(services, delivery, FAILED)
            return False
        deliveries.save(r, delivery, due_at=time.time() + services.settings.delivery_lease)
    return True


def _revive(services: Services, delivery_id: str, now: float) -> int:
    """Enqueue an overdue delivery again unless an attempt holds it; return 1 if enqueued."""
    token = deliveries.lease(services.redis, delivery_id, services.settings.delivery_lease)
    if token is None:
        return 0
    try:
        wanted = _needs_attempt(services, delivery_id)
    finally:
        # Before the enqueue: a worker quick to start the job must find the lease free.
        deliveries.release(services.redis, delivery_id, token)
    if wanted:
        queues.enqueue_delivery(services.rq, services.settings, delivery_id, trigger="sweep",
                                retry=True, now=now)
    return int(wanted)


def sweep_deliveries(services: Services, now: float) -> int:
    """Enqueue again pending deliveries overdue by 5 s or more (lost jobs, dead workers)."""
    count = 0
    for delivery_id in deliveries.overdue(services.redis, now - 5):
        try:
            count += _revive(services, delivery_id, now)
        except Exception:  # noqa: BLE001 - one broken record must not stop the sweep
            log.exception("sweep: cannot look at delivery %s", delivery_id)
    return count


def sweep_overdue(now: float) -> int:
    """The sweeper's pass (its own job): revive deliveries overdue at ``now``."""
    return sweep_deliveries(current(), now)
