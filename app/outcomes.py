"""An attempt's record: begun in progress, then concluded by its outcome.

What an answer does is decided here, for every path that sends (``jobs.deliver``'s fresh,
retried and read-ahead attempts alike): a 2xx succeeds (and forgives the subscription's
failures), a 410 disables the subscription, a subscription failing for
``delivery_disable_after`` is disabled, else the next attempt is scheduled with backoff or
the delivery fails. Every conclusion stores the delivery and drops its lease in one step.

A plain success (nothing to forgive) may leave that last save to the caller
(``later=True``): a lane sends it with its next attempt's start, in one round trip. Until
then the attempt stays ``in_progress`` under its lease, as while it was on the wire, so a
crash in between is a lost worker's attempt, sent again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from app import events, queues
from app.backoff import next_delay
from app.lanes import Later
from app.models import Attempt, Delivery, Subscription, Trigger
from app.services import Services
from app.store import deliveries, subscriptions
from app.store.deliveries import FAILED, SUCCEEDED

log = logging.getLogger(__name__)

IN_PROGRESS, WORKER_LOST = "in_progress", "worker_lost"


def finish(services: Services, delivery: Delivery, status: str, token: str = "") -> None:
    """Store the delivery's final state (it leaves the pending and due sets); drop the lease."""
    delivery.status, delivery.next_attempt_at = status, None
    deliveries.save(services.redis, delivery, release=token)


def disable(services: Services, subscription_id: str, reason: str) -> None:
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


def schedule(services: Services, delivery: Delivery, delay: float, token: str) -> None:
    """Queue the next attempt on the retry queue (sub-second delays: tests' schedules).

    The lease goes with the save, before the enqueue: the next attempt must find it free."""
    delivery.next_attempt_at = time.time() + delay
    deliveries.save(services.redis, delivery, release=token)
    if delay < 1:
        time.sleep(delay)
        delay = 0
    queues.enqueue_delivery(services.rq, services.settings, delivery.id,
                            attempt=len(delivery.attempts), retry=True, delay=delay)


def mark_lost(delivery: Delivery) -> bool:
    """Call attempts left in progress by a dead worker lost; return True if there were any.

    Only a holder of the delivery's lease may call this: then no attempt is under way.
    """
    lost = [a for a in delivery.attempts if a.get("error_class") == IN_PROGRESS]
    for entry in lost:
        entry.update(error_class=WORKER_LOST, response="the worker stopped during the attempt")
    return bool(lost)


def conclude(services: Services, delivery: Delivery, sub: Subscription | None,
             entry: dict[str, Any], token: str, *, later: bool = False) -> str | Later:
    """Store the attempt's outcome and drop the lease; disable, forgive or schedule.

    With ``later``, a plain success returns its last save undone, as a :class:`Later`.
    """
    if entry["error_class"] is None:  # a 2xx, read within the deadline
        if later and (sub is None or (sub.failing_since, sub.last_failure_at) == (None, None)):
            return _succeeded_later(services, delivery, token)
        finish(services, delivery, SUCCEEDED, token)
        # As read when the attempt began: a failure recorded meanwhile waits for the next.
        if sub is not None and (sub.failing_since, sub.last_failure_at) != (None, None):
            subscriptions.mark_healthy(services.redis, sub.id)
        return "delivered"
    if entry["status_code"] == 410 and entry["error_class"] == "http_status" and sub is not None:
        finish(services, delivery, FAILED, token)
        disable(services, sub.id, "the endpoint answered 410 Gone")
        return "gone"
    if sub is not None:
        now, window = time.time(), services.settings.delivery_disable_after
        fresh = subscriptions.mark_failing(services.redis, sub.id, now, window)
        if fresh is not None and now - (fresh.failing_since or now) >= window:
            finish(services, delivery, FAILED, token)
            disable(services, sub.id, f"every delivery failed for {window} seconds")
            return "disabled"
    delay = next_delay(services.settings, delivery.attempts)
    if delay is None:
        finish(services, delivery, FAILED, token)
        return "exhausted"
    schedule(services, delivery, delay, token)
    return f"retry in {delay:.3f}s"


def begin(delivery: Delivery, trigger: Trigger) -> Attempt:
    """Append the attempt about to be made, in progress (a dead worker's ones become lost)."""
    mark_lost(delivery)
    entry: Attempt = {"at": time.time(), "url": delivery.url, "trigger": trigger,
                      "status_code": None, "error_class": IN_PROGRESS, "response": "",
                      "retry_after": None, "duration_ms": 0}
    delivery.attempts.append(entry)
    return entry




def _succeeded_later(services: Services, delivery: Delivery, token: str) -> Later:
    """Return a success's last save (it drops the lease), for the lane to send."""
    delivery.status, delivery.next_attempt_at = SUCCEEDED, None
    r = services.redis
    return Later("delivered", deliveries.save_call(delivery, release=token),
                 lambda call: call.run(r))
