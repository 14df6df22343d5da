"""Heal what a crash left behind; enqueued every 30 s by the clock process (``jobs/cron.py``).

- a running request whose worker died (lease expired): requeued, or FAILED with the reason;
- a queued request whose job vanished: its submit or inference job enqueued again;
- a stored callback never settled: its settle job enqueued again;
- a finished request whose event a crash left unsent: announced;
- overdue deliveries and fal requests with no callback past their lease: their own passes
  (``jobs.deliver.sweep_overdue``, ``jobs.reconcile.reconcile_overdue``) are enqueued;
- stored files whose request or upload expired: the janitor (``jobs.janitor``) is enqueued.
"""

from __future__ import annotations

import time

from app import lifecycle, queues
from app.events import announce_owed
from app.models import Status
from app.services import Services, current
from app.storage import UPLOAD_SLOT_SECONDS
from app.store import callbacks, clock, tracking
from app.store import requests as store

STALE_AFTER = 60


def recover_lost_workers(svc: Services, now: float) -> int:
    """Retry or fail requests whose inference lease ran out; return how many."""
    r = svc.redis
    count = 0
    for request_id in tracking.expired_leases(r, now):
        record = store.get(r, request_id)
        if record is None or record.status is not Status.IN_PROGRESS:
            tracking.forget_lease(r, request_id)
            continue
        if record.provider != "local":
            continue
        if record.attempts < svc.settings.max_attempts and not record.no_retry:
            if lifecycle.requeue(svc, request_id, "the inference worker was lost; retrying"):
                queues.enqueue_infer(svc.rq, svc.settings, request_id, record.attempts,
                                     low=record.priority == "low",
                                     video="video_url" in record.input)
        else:
            reason = (f"the inference worker stopped during the job {record.attempts} time(s); "
                      + ("not retried (x-fal-no-retry)" if record.no_retry else "giving up"))
            lifecycle.fail(svc, request_id, {"type": "worker_lost", "message": reason},
                           sources=(Status.IN_PROGRESS,), now=now)
        count += 1
    return count


def requeue_stale(svc: Services, now: float) -> int:
    """Enqueue again the job of queued requests older than STALE_AFTER; return how many."""
    r = svc.redis
    count = 0
    for request_id in tracking.stale_queued(r, now - STALE_AFTER):
        record = store.get(r, request_id)
        if record is None or record.status is not Status.IN_QUEUE:
            tracking.forget_queued(r, request_id)
            continue
        if not record.provider_ref:
            job = queues.enqueue_submit(svc.rq, request_id, again=True)
        elif record.provider == "local":
            job = queues.enqueue_infer(svc.rq, svc.settings, request_id, record.attempts,
                                       low=record.priority == "low",
                                       video="video_url" in record.input)
        else:
            job = None
        count += job is not None
    return count


def resettle(svc: Services, now: float) -> int:
    """Enqueue settle again for callbacks stored but not settled; return how many."""
    found = callbacks.pending(svc.redis, now - STALE_AFTER)
    for cid in found:
        queues.enqueue_settle(svc.rq, cid, again_at=now)
    return len(found)


def sweep(now: float | None = None) -> dict[str, int | str | None]:
    """Run every healing pass once as of ``now`` (default: the time it runs).

    Returns:
        How many requests or callbacks each pass healed; for the passes enqueued as their
        own jobs (``deliveries``, ``reconciled``, ``files``), the RQ job id.
    """
    svc = current()
    now = time.time() if now is None else now
    clock.mark_swept(svc.redis, time.time())
    return {"lost_workers": recover_lost_workers(svc, now),
            "stale_queued": requeue_stale(svc, now), "resettled": resettle(svc, now),
            "announced": announce_owed(svc, now - STALE_AFTER),
            # Multipart uploads never completed: their slot is gone, so are their parts.
            "stale_parts": svc.storage.drop_stale_parts(now - UPLOAD_SLOT_SECONDS),
            "deliveries": queues.enqueue_sweep_deliveries(svc.rq, now),
            "reconciled": queues.enqueue_reconcile(svc.rq, now),
            "files": queues.enqueue_clean_files(svc.rq, now)}
