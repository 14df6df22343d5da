"""Heal what a crash left behind; enqueued every 30 s by the clock process (``jobs/cron.py``).

- a running request whose worker died (lease expired): retried, or FAILED with the reason;
- a queued request whose job vanished: its submit or inference job enqueued again;
- a stored callback never settled: its settle job enqueued again;
- a delivery overdue (job lost, worker killed mid-attempt): enqueued again;
- a fal request with no callback past its lease: settled from fal's status API.
"""

from __future__ import annotations

import time

from app import queues
from app.models import Status
from app.providers.local import infer_job_id
from app.services import Services, current
from app.store import callbacks
from app.store import requests as store
from app.store.keys import key_for_leases, key_for_queue

STALE_AFTER = 60


def recover_lost_workers(svc: Services, now: float) -> int:
    """Retry or fail requests whose inference lease ran out; return how many."""
    r = svc.redis
    count = 0
    for request_id in store.expired_leases(r, now):
        record = store.get(r, request_id)
        if record is None or record.status is not Status.IN_PROGRESS:
            r.zrem(key_for_leases(), request_id)
            continue
        if record.provider != "local":
            continue
        if record.attempts < svc.settings.max_attempts:
            if store.transition(r, request_id, (Status.IN_PROGRESS,), Status.IN_QUEUE):
                r.zadd(key_for_queue(), {request_id: record.created_at})
                store.add_log(r, request_id, "the inference worker was lost; retrying", "WARNING")
                queues.enqueue(svc.rq, queues.INFERENCE, queues.JOB_INFER, request_id,
                               job_id=infer_job_id(record), timeout=svc.settings.job_timeout,
                               retry=(2, 10, 30), unique=True)
        else:
            reason = (f"the inference worker stopped during the job {record.attempts} time(s); "
                      "giving up")
            if store.fail(r, request_id, (Status.IN_PROGRESS,), "worker_lost", reason, now):
                from jobs.settle import announce

                announce(request_id, "request.failed")
        count += 1
    return count


def requeue_stale(svc: Services, now: float) -> int:
    """Enqueue again the job of queued requests older than STALE_AFTER; return how many."""
    r = svc.redis
    count = 0
    for request_id in store.stale_queued(r, now - STALE_AFTER):
        record = store.get(r, request_id)
        if record is None or record.status is not Status.IN_QUEUE:
            r.zrem(key_for_queue(), request_id)
            continue
        if not record.provider_ref:
            job = queues.enqueue(svc.rq, queues.SUBMIT, queues.JOB_SUBMIT, request_id,
                                 job_id=f"submit-{request_id}", unique=True)
        elif record.provider == "local":
            job = queues.enqueue(svc.rq, queues.INFERENCE, queues.JOB_INFER, request_id,
                                 job_id=infer_job_id(record), unique=True,
                                 timeout=svc.settings.job_timeout, retry=(2, 10, 30))
        else:
            job = None
        count += job is not None
    return count


def resettle(svc: Services, now: float) -> int:
    """Enqueue settle again for callbacks stored but not settled; return how many."""
    found = callbacks.pending(svc.redis, now - STALE_AFTER)
    for cid in found:
        queues.enqueue(svc.rq, queues.SETTLE, queues.JOB_SETTLE, cid,
                       job_id=f"settle-{cid}-{int(now)}")
    return len(found)


def sweep() -> dict[str, int]:
    """Run every healing pass once; return what each did."""
    svc = current()
    now = time.time()
    from app.events import announce_owed
    from jobs.deliver import sweep_deliveries
    from jobs.reconcile import reconcile

    return {"lost_workers": recover_lost_workers(svc, now),
            "stale_queued": requeue_stale(svc, now), "resettled": resettle(svc, now),
            "announced": announce_owed(svc, now - STALE_AFTER),
            "deliveries": sweep_deliveries(svc, now), "reconciled": reconcile(svc, now)}
