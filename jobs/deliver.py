"""Deliver events: a signed POST per endpoint, every attempt logged, retries scheduled.

Success is 2xx only; 3xx is a failure and never followed; 410 disables the subscription;
429/502/503/504 and timeouts wait at least ``delivery_overload_delay``; Retry-After is
honoured within [scheduled, 2 × scheduled]; delays get ±jitter (``app.backoff``). A fan-out's
first attempts go out side by side (``deliver_all``, through ``app.sending``), read ahead.

One attempt at a time: an attempt takes the delivery's lease (a lock owned by a token, longer
than an attempt may run) as it reads the delivery, and logs an ``in_progress`` attempt before
it sends. If the worker dies, that entry stays; the sweeper turns it into ``worker_lost`` and
counts it against the schedule, so a delivery that keeps killing its worker ends as failed.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

from app import events, queues, sending
from app.backoff import next_delay
from app.models import Attempt, Delivery, Subscription, Trigger
from app.services import Services, current
from app.store import attempts, deliveries, subscriptions
from app.store.deliveries import FAILED, PENDING, SUCCEEDED

log = logging.getLogger(__name__)

IN_PROGRESS, WORKER_LOST = "in_progress", "worker_lost"
EARLY = 2.0
"""Seconds before its due time a job may still attempt (RQ schedules to the whole second)."""


def _finish(services: Services, delivery: Delivery, status: str, token: str = "") -> None:
    """Store the delivery's final state (it leaves the pending and due sets); drop the lease."""
    delivery.status, delivery.next_attempt_at = status, None
    deliveries.save(services.redis, delivery, release=token)


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


def _schedule(services: Services, delivery: Delivery, delay: float, token: str) -> None:
    """Queue the next attempt on the retry queue (sub-second delays: tests' schedules).

    The lease goes with the save, before the enqueue: the next attempt must find it free."""
    delivery.next_attempt_at = time.time() + delay
    deliveries.save(services.redis, delivery, release=token)
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
              entry: dict[str, Any], token: str) -> str:
    """Store the attempt's outcome and drop the lease; disable, forgive or schedule."""
    if entry["error_class"] is None:  # a 2xx, read within the deadline
        _finish(services, delivery, SUCCEEDED, token)
        # As read when the attempt began: a failure recorded meanwhile waits for the next.
        if sub is not None and (sub.failing_since, sub.last_failure_at) != (None, None):
            subscriptions.mark_healthy(services.redis, sub.id)
        return "delivered"
    if entry["status_code"] == 410 and entry["error_class"] == "http_status" and sub is not None:
        _finish(services, delivery, FAILED, token)
        _disable(services, sub.id, "the endpoint answered 410 Gone")
        return "gone"
    if sub is not None:
        now, window = time.time(), services.settings.delivery_disable_after
        fresh = subscriptions.mark_failing(services.redis, sub.id, now, window)
        if fresh is not None and now - (fresh.failing_since or now) >= window:
            _finish(services, delivery, FAILED, token)
            _disable(services, sub.id, f"every delivery failed for {window} seconds")
            return "disabled"
    delay = next_delay(services.settings, delivery.attempts)
    if delay is None:
        _finish(services, delivery, FAILED, token)
        return "exhausted"
    _schedule(services, delivery, delay, token)
    return f"retry in {delay:.3f}s"


def _begin(delivery: Delivery, trigger: Trigger) -> Attempt:
    """Append the attempt about to be made, in progress (a dead worker's ones become lost)."""
    _mark_lost(delivery)
    entry: Attempt = {"at": time.time(), "url": delivery.url, "trigger": trigger,
                      "status_code": None, "error_class": IN_PROGRESS, "response": "",
                      "retry_after": None, "duration_ms": 0}
    delivery.attempts.append(entry)
    return entry


def _attempt(services: Services, delivery: Delivery, token: str, trigger: Trigger) -> str:
    """Log the attempt as in progress, make it, conclude and drop the lease ``token``."""
    entry = _begin(delivery, trigger)
    # Logged before anything else can fail: every run counts against the schedule.
    is_sub = delivery.kind == "subscription"
    sub = deliveries.save(services.redis, delivery, subscription=is_sub,
                          due_at=time.time() + services.settings.delivery_lease)
    return _send(services, delivery, token, entry, sub)


def _send(services: Services, delivery: Delivery, token: str, entry: Attempt,
          sub: Subscription | None) -> str:
    """Make the attempt ``entry`` (logged in progress), conclude it and drop the lease."""
    secrets = None
    if delivery.kind == "subscription":
        if sub is None or not sub.enabled:
            entry.update(error_class="subscription_disabled", response="")
            _finish(services, delivery, FAILED, token)
            return "subscription disabled"
        # The subscription's URL now, not when the event was made: a PATCH reaches retries.
        entry["url"], secrets = sub.url, sub.live_secrets(time.time())
    entry.update(sending.post(services, delivery, entry["url"], secrets))
    return _conclude(services, delivery, sub, entry, token)


def _due(delivery: Delivery) -> bool:
    """Return True when a delivery read is pending and due (or nearly)."""
    return delivery.status == PENDING and (delivery.next_attempt_at or 0) <= time.time() + EARLY


def _under_lease(svc: Services, delivery_id: str, token: str, delivery: Delivery | None,
                 trigger: Trigger) -> str:
    """Attempt a delivery read under the lease ``token``, if it is pending and due."""
    r = svc.redis
    if delivery is None or delivery.status != PENDING:
        deliveries.release(r, delivery_id, token)
        return "nothing to do"
    if not _due(delivery):
        # Due again when scheduled, not when our lease ends.
        deliveries.save(r, delivery, release=token)
        return "not due"  # a duplicate job (the sweeper's); the scheduled one comes later
    try:
        return _attempt(svc, delivery, token, trigger)  # its last save drops the lease
    except BaseException:
        deliveries.release(r, delivery_id, token)
        raise


def _read_ahead(svc: Services, delivery_id: str, ahead: str, trigger: Trigger) -> str:
    """Attempt a delivery read before its lease: lease and log in one step if unchanged."""
    delivery = Delivery.from_json(ahead)
    if not _due(delivery):
        return deliver(delivery_id, trigger)  # decided under the lease, the usual way
    entry = _begin(delivery, trigger)
    lease = svc.settings.delivery_lease
    token, logged, found = attempts.start(svc.redis, delivery, ahead, lease,
                                          time.time() + lease,
                                          subscription=delivery.kind == "subscription")
    if token is None:
        return "busy"
    if not logged:  # changed since it was read: as it is now, under the lease
        return _under_lease(svc, delivery_id, token, found, trigger)  # type: ignore[arg-type]
    try:
        return _send(svc, delivery, token, entry, found)  # type: ignore[arg-type]
    except BaseException:
        deliveries.release(svc.redis, delivery_id, token)
        raise


def deliver(delivery_id: str, trigger: Trigger = "scheduled") -> str:
    """Make the next attempt of a pending delivery; schedule the one after if it fails.

    ``trigger`` says what enqueued it (the schedule, a redeliver, the sweeper); the attempt
    log keeps it.
    """
    svc = current()
    # Read under the lease: no other attempt changes the delivery from here on.
    token, delivery = deliveries.take(svc.redis, delivery_id, svc.settings.delivery_lease)
    if token is None:
        return "busy"
    return _under_lease(svc, delivery_id, token, delivery, trigger)


class Ahead(NamedTuple):
    """A fan-out's delivery and its record as read when the job handed it over."""

    id: str
    raw: str | None

    def __repr__(self) -> str:
        return self.id  # what a log line names: the id, not the body


def _run(item: Ahead) -> str:
    """The sender's run: one attempt of a delivery handed over by a fan-out job."""
    if item.raw is None:
        return deliver(item.id)
    return _read_ahead(current(), item.id, item.raw, "scheduled")


def _hold(items: list[Ahead]) -> None:
    """Keep deliveries a sender holds from the sweeper for one more lease."""
    svc = current()
    deliveries.hold(svc.redis, [i.id for i in items],
                    time.time() + svc.settings.delivery_lease)


def deliver_all(items: list[list[str]]) -> str:
    """Send a fan-out's first attempts side by side (``[delivery id, endpoint]`` each).

    The delivery worker's sender outlives the job, which hands them over and returns (the
    next event's start while a slow endpoint still answers); elsewhere the job waits for
    them. What a full lane cannot take is queued again for a second later."""
    svc = current()
    sender = svc.sender(_run, keep=_hold)
    # Not due while the sender holds them: the sweeper waits as it would for a lease (and
    # the sender holds what waits in a lane again while the lane moves). Read in the same
    # round trip, so that each attempt takes its lease and logs itself in one more.
    ids = [i for i, _ in items]
    raws = attempts.hold_and_read(svc.redis, ids, time.time() + svc.settings.delivery_lease)
    futures, over = sender.submit((Ahead(i, raw), e)
                                  for (i, e), raw in zip(items, raws, strict=True))
    if over:
        left = {item.id for item in over}
        queues.enqueue_deliveries(svc.rq, svc.settings, [x for x in items if x[0] in left],
                                  delay=1)
    if not sender.detached:
        for future in futures:
            future.result()
    return f"{len(futures)} taken, {len(over)} later"


def _needs_attempt(services: Services, delivery_id: str, delivery: Delivery | None) -> bool:
    """Return True if an overdue delivery should be attempted again (read under its lease).

    An attempt a dead worker left in progress counts: if it was the last one the schedule
    allows, the delivery fails here instead of being retried forever.
    """
    r = services.redis
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
    token, delivery = deliveries.take(services.redis, delivery_id,
                                      services.settings.delivery_lease)
    if token is None:
        return 0
    try:
        wanted = _needs_attempt(services, delivery_id, delivery)
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
