"""Deliver events: a signed POST per endpoint, every attempt logged, retries scheduled.

Success is 2xx only; 3xx is a failure and never followed; 410 disables the subscription;
429/502/503/504 and timeouts wait at least ``delivery_overload_delay``; Retry-After is
honoured within [scheduled, 2 × scheduled]; delays get ±jitter (``app.backoff``); what an
outcome does is ``app.outcomes``'. A fan-out's first attempts go out side by side
(``deliver_all``, through ``app.lanes``), read ahead, and a lane sends a plain success's last
save with its next attempt's start.

One attempt at a time: an attempt takes the delivery's lease (a lock owned by a token, longer
than an attempt may run) as it reads the delivery, and logs an ``in_progress`` attempt before
it sends. If the worker dies, that entry stays; the sweeper turns it into ``worker_lost`` and
counts it against the schedule, so a delivery that keeps killing its worker ends as failed.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from app import queues, sending
from app.backoff import next_delay
from app.lanes import Later
from app.models import Attempt, Delivery, Subscription, Trigger
from app.outcomes import begin, conclude, finish, mark_lost
from app.services import Services, current
from app.store import attempts, deliveries
from app.store.deliveries import FAILED, PENDING

log = logging.getLogger(__name__)

EARLY = 2.0
"""Seconds before its due time a job may still attempt (RQ schedules to the whole second)."""


def _attempt(services: Services, delivery: Delivery, token: str, trigger: Trigger) -> str:
    """Log the attempt as in progress, make it, conclude and drop the lease ``token``."""
    entry = begin(delivery, trigger)
    # Logged before anything else can fail: every run counts against the schedule.
    is_sub = delivery.kind == "subscription"
    sub = deliveries.save(services.redis, delivery, subscription=is_sub,
                          due_at=time.time() + services.settings.delivery_lease)
    return _send(services, delivery, token, entry, sub)  # type: ignore[return-value]


def _send(services: Services, delivery: Delivery, token: str, entry: Attempt,
          sub: Subscription | None, *, later: bool = False) -> str | Later:
    """Make the attempt ``entry`` (logged in progress), conclude it and drop the lease
    (with ``later``, a plain success leaves that last save to its lane)."""
    secrets = None
    if delivery.kind == "subscription":
        if sub is None or not sub.enabled:
            entry.update(error_class="subscription_disabled", response="")
            finish(services, delivery, FAILED, token)
            return "subscription disabled"
        # The subscription's URL now, not when the event was made: a PATCH reaches retries.
        entry["url"], secrets = sub.url, sub.live_secrets(time.time())
    entry.update(sending.post(services, delivery, entry["url"], secrets))
    return conclude(services, delivery, sub, entry, token, later=later)


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


def _read_ahead(svc: Services, delivery_id: str, ahead: str, trigger: Trigger,
                before: Later | None) -> str | Later:
    """Attempt a delivery read before its lease: lease and log in one step if unchanged,
    ``before`` (the lane's previous last save) sent first in the same round trip."""
    delivery = Delivery.from_json(ahead)
    if not _due(delivery):
        _write(before)
        return deliver(delivery_id, trigger)  # decided under the lease, the usual way
    entry = begin(delivery, trigger)
    lease = svc.settings.delivery_lease
    token, logged, found = attempts.start(svc.redis, delivery, ahead, lease,
                                          time.time() + lease,
                                          subscription=delivery.kind == "subscription",
                                          before=_pending(before))
    if before is not None:
        before.taken()
    if token is None:
        return "busy"
    if not logged:  # changed since it was read: as it is now, under the lease
        return _under_lease(svc, delivery_id, token, found, trigger)  # type: ignore[arg-type]
    try:
        return _send(svc, delivery, token, entry, found, later=True)  # type: ignore[arg-type]
    except BaseException:
        deliveries.release(svc.redis, delivery_id, token)
        raise


def _pending(before: Later | None) -> list:
    """Return the script run a lane's previous Later still owes (none when written)."""
    return [before.payload] if before is not None and not before.written else []


def _write(before: Later | None) -> None:
    """Make a lane's previous last save now, before an attempt that cannot carry it."""
    if before is not None:
        before.write()


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


def _run(item: Ahead, before: Later | None) -> str | Later:
    """The sender's run: one attempt of a delivery handed over by a fan-out job, after the
    lane's previous one's last save (``before``, None when it had none left)."""
    if item.raw is None:
        _write(before)
        return deliver(item.id)
    return _read_ahead(current(), item.id, item.raw, "scheduled", before)


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
    if mark_lost(delivery):
        if next_delay(services.settings, delivery.attempts) is None:
            finish(services, delivery, FAILED)
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
