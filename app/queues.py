"""Queue names, job paths and enqueue helpers: the one place that talks to RQ's queues.

Jobs are enqueued by dotted string on JSON-serialised queues, so the web process
never imports ``jobs`` or the engine, and a non-JSON argument fails at enqueue.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from app.config import Settings
from app.store import one_round_trip

SUBMIT = "submit"
INFERENCE = "inference"
INFERENCE_LOW = "inference-low"
INFERENCE_QUEUES = (INFERENCE, INFERENCE_LOW)
"""The inference worker's queues, in the order it takes jobs: low priority only when no
normal job waits (fal's ``x-fal-queue-priority: low``)."""
SETTLE = "settle"
DELIVERY = "delivery"
DELIVERY_RETRY = "delivery-retry"
MAINTENANCE = "maintenance"

FAST_QUEUES = (SUBMIT, SETTLE, DELIVERY, DELIVERY_RETRY, MAINTENANCE)
WORKERS = {"worker": (SUBMIT, SETTLE), "delivery": (DELIVERY,), "retry": (DELIVERY_RETRY,),
           "maintenance": (MAINTENANCE,)}
"""Procfile process → the fast queues it works: fresh deliveries never wait behind submits
and settles, retries never behind fresh ones, and the sweeper never behind any of them."""

MAINTENANCE_INTERVAL = 60
"""Seconds between a worker's maintenance passes, where RQ retries taking a scheduler lock
that was still held when the worker started (the Procfile passes the same to ``rq worker``)."""

JOB_SUBMIT = "jobs.submit.submit"
JOB_INFER = "jobs.infer.infer"
JOB_SETTLE = "jobs.settle.settle"
JOB_DELIVER = "jobs.deliver.deliver"
JOB_DELIVER_ALL = "jobs.deliver.deliver_all"
JOB_SWEEP = "jobs.sweep.sweep"
JOB_SWEEP_DELIVERIES = "jobs.deliver.sweep_overdue"
JOB_RECONCILE = "jobs.reconcile.reconcile_overdue"
JOB_FAL_CANCEL = "jobs.reconcile.cancel_at_fal"
JOB_CLEAN_FILES = "jobs.janitor.clean_files"
JOB_PATHS = (JOB_SUBMIT, JOB_INFER, JOB_SETTLE, JOB_DELIVER, JOB_DELIVER_ALL, JOB_SWEEP,
             JOB_SWEEP_DELIVERIES, JOB_RECONCILE, JOB_FAL_CANCEL, JOB_CLEAN_FILES)

RETRIES = (1, 5, 30)
"""Seconds between RQ's retries of a job that raised (submit, settle)."""
INFER_RETRIES = (2, 10, 30)
"""Seconds between retries of an inference job whose callback was not taken."""
FAL_CANCEL_RETRIES = (10, 60, 300, 900, 3600)
"""Seconds between tries to tell fal about a cancel it could not take when it was made."""
SWEEP_TIMEOUT = 120


# -- job ids: one builder per job, so a job is never enqueued twice under two names ---------

def submit_job_id(request_id: str) -> str:
    """The submit job of a request (one: enqueued again only when it was lost)."""
    return f"submit-{request_id}"


def infer_job_id(request_id: str, attempt: int) -> str:
    """The inference job of one attempt of a request."""
    return f"infer-{request_id}-{attempt}"


def settle_job_id(callback_id: str, again_at: float | None = None) -> str:
    """The settle job of a callback (``again_at``: the sweeper's later try)."""
    return f"settle-{callback_id}" + ("" if again_at is None else f"-{int(again_at)}")


def deliver_job_id(delivery_id: str, trigger: str, attempt: int, now: float) -> str:
    """One attempt of a delivery: by its schedule (per attempt), by hand, or by the sweeper."""
    if trigger == "scheduled":
        return f"deliver-{delivery_id}-{attempt}"
    if trigger == "manual":
        return f"deliver-{delivery_id}-manual-{int(now * 1e9)}"
    return f"deliver-{delivery_id}-sweep-{int(now)}"


def deliver_all_job_id(first_delivery_id: str, later: float | None = None) -> str:
    """The job sending a fan-out's deliveries side by side (``later``: what waited for room)."""
    if later is None:
        return f"deliver-{first_delivery_id}-fanout"
    return f"deliver-{first_delivery_id}-later-{int(later * 1e9)}"


def fal_cancel_job_id(request_id: str) -> str:
    """The job that tells fal about a cancel."""
    return f"fal-cancel-{request_id}"


def rq_connection(url: str, sentinels: tuple[str, ...] = (), master: str = "") -> Redis:
    """Return a byte-level Redis client for RQ (RQ needs undecoded responses)."""
    if sentinels:
        from app.store import sentinel_master

        return sentinel_master(url, sentinels, master, socket_connect_timeout=5,
                               health_check_interval=30)
    return Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def queue(connection: Redis, name: str) -> Queue:
    """Return one of our queues, JSON-serialised."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue(
    connection: Redis,
    name: str,
    func: str,
    *args: Any,
    job_id: str | None = None,
    timeout: int | None = None,
    retry: Sequence[float] | None = None,
    delay: float = 0,
    unique: bool = False,
    at_front: bool = False,
) -> str | None:
    """Enqueue ``func`` by dotted path; return the job id, or None for a unique duplicate."""
    q = queue(connection, name)
    options: dict[str, Any] = {"job_id": job_id, "job_timeout": timeout, "result_ttl": 3600,
                               "failure_ttl": 7 * 86400}
    if retry:
        options["retry"] = Retry(max=len(retry), interval=[int(x) for x in retry])
    try:
        if delay > 0:
            return q.enqueue_in(timedelta(seconds=delay), func, *args, **options).id
        # RQ's writes (the set of queues, the job, the push) in one round trip, not two.
        return one_round_trip(connection, lambda pipe: q.enqueue(
            func, *args, unique=unique, at_front=at_front, pipeline=pipe, **options)).id
    except DuplicateJobError:
        return None


def enqueue_submit(connection: Redis, request_id: str, *, again: bool = False) -> str | None:
    """Enqueue the hand-over of a request to its provider (``again``: only if none is there)."""
    return enqueue(connection, SUBMIT, JOB_SUBMIT, request_id, job_id=submit_job_id(request_id),
                   retry=RETRIES, unique=again)


class Writes(NamedTuple):
    """RQ's writes that enqueue one job, for a store script to make with its own."""

    keys: list[str]
    """The job's hash, its queue's list, and RQ's set of queues."""
    job_id: str
    ttl: int
    """Seconds the job's hash lives; -1 for ever."""
    fields: list[Any]
    """The job's hash, as field, value, field, value..."""


def settle_writes(connection: Redis, callback_id: str) -> Writes:
    """Return what enqueueing a new callback's settle job writes (its deterministic id).

    The job is built by RQ (``Queue.create_job``, and the fields its enqueue sets), so the
    ingress can store the callback and queue the job in one round trip; the store's script
    pushes it only if no job of that id exists, as RQ's unique enqueue does.
    """
    q = queue(connection, SETTLE)
    job = q.create_job(JOB_SETTLE, args=(callback_id,), job_id=settle_job_id(callback_id),
                       result_ttl=3600, failure_ttl=7 * 86400,
                       retry=Retry(max=len(RETRIES), interval=list(RETRIES)))
    q._prepare_for_queue(job)  # noqa: SLF001 - origin, enqueued_at, timeout, status, as enqueue
    fields = [x for name, value in job.to_dict().items() if value is not None
              for x in (name, value if isinstance(value, bytes | str) else str(value))]
    return Writes([job.key, q.key, q.redis_queues_keys], job.id,
                  job.ttl if job.ttl is not None else -1, fields)


def enqueue_infer(connection: Redis, settings: Settings, request_id: str,
                  attempt: int, low: bool = False, video: bool = False) -> str | None:
    """Enqueue one inference attempt of a request, at most once (``low``: its own queue;
    ``video``: the time limit of the longest video allowed, the job keeps its own)."""
    return enqueue(connection, INFERENCE_LOW if low else INFERENCE, JOB_INFER, request_id,
                   job_id=infer_job_id(request_id, attempt),
                   timeout=settings.video_job_timeout if video else settings.job_timeout,
                   retry=INFER_RETRIES, unique=True)


def enqueue_settle(connection: Redis, callback_id: str,
                   again_at: float | None = None) -> str | None:
    """Enqueue the settling of a stored callback (once; the sweeper's tries are new jobs)."""
    return enqueue(connection, SETTLE, JOB_SETTLE, callback_id,
                   job_id=settle_job_id(callback_id, again_at), unique=again_at is None,
                   retry=RETRIES if again_at is None else None)


def enqueue_delivery(connection: Redis, settings: Settings, delivery_id: str, *,
                     trigger: str = "scheduled", attempt: int = 0, retry: bool = False,
                     delay: float = 0, now: float | None = None) -> str | None:
    """Enqueue one attempt of a delivery, with the job timeout its lease is derived from."""
    job_id = deliver_job_id(delivery_id, trigger, attempt, time.time() if now is None else now)
    return enqueue(connection, DELIVERY_RETRY if retry else DELIVERY, JOB_DELIVER, delivery_id,
                   trigger, job_id=job_id, timeout=settings.delivery_job_timeout, delay=delay)


def enqueue_deliveries(connection: Redis, settings: Settings,
                       items: Sequence[tuple[str, str]], *, delay: float = 0) -> str | None:
    """Enqueue one job for a fan-out's first attempts: ``(delivery id, endpoint)`` each.

    Its timeout allows every wave the per-endpoint cap makes of it, plus one while it waits
    for room: each attempt in it holds its own lease.
    """
    if not items:
        return None
    per_endpoint = Counter(endpoint for _, endpoint in items)
    waves = math.ceil(max(per_endpoint.values()) / settings.delivery_per_endpoint)
    job_id = deliver_all_job_id(items[0][0], time.time() if delay else None)
    return enqueue(connection, DELIVERY, JOB_DELIVER_ALL, [list(item) for item in items],
                   job_id=job_id, timeout=settings.delivery_job_timeout * (waves + 1),
                   delay=delay)


def enqueue_sweep(connection: Redis) -> str | None:
    """Enqueue one pass of the sweeper."""
    return enqueue(connection, MAINTENANCE, JOB_SWEEP, timeout=SWEEP_TIMEOUT)


def enqueue_sweep_deliveries(connection: Redis, now: float) -> str | None:
    """Enqueue the sweeper's pass over overdue deliveries."""
    return enqueue(connection, MAINTENANCE, JOB_SWEEP_DELIVERIES, now, timeout=SWEEP_TIMEOUT,
                   job_id=f"sweep-deliveries-{int(now)}")


def enqueue_reconcile(connection: Redis, now: float) -> str | None:
    """Enqueue the sweeper's pass over fal requests whose callback is late."""
    return enqueue(connection, MAINTENANCE, JOB_RECONCILE, now, timeout=SWEEP_TIMEOUT,
                   job_id=f"reconcile-{int(now)}")


def enqueue_clean_files(connection: Redis, now: float) -> str | None:
    """Enqueue the janitor's pass over stored files whose owner has expired."""
    return enqueue(connection, MAINTENANCE, JOB_CLEAN_FILES, now, timeout=SWEEP_TIMEOUT,
                   job_id=f"clean-files-{int(now)}")


def enqueue_fal_cancel(connection: Redis, request_id: str) -> str | None:
    """Enqueue the job that tells fal about a cancel, retried until fal answers."""
    return enqueue(connection, SUBMIT, JOB_FAL_CANCEL, request_id,
                   job_id=fal_cancel_job_id(request_id), unique=True, retry=FAL_CANCEL_RETRIES)


def cancel_submit(connection: Redis, request_id: str) -> None:
    """Drop a request's submit job if it is still queued."""
    cancel_job(connection, submit_job_id(request_id))


def cancel_infer(connection: Redis, request_id: str, attempt: int) -> None:
    """Drop a request's inference job if it is still queued."""
    cancel_job(connection, infer_job_id(request_id, attempt))


def cancel_job(connection: Redis, job_id: str) -> None:
    """Cancel a queued job if it is still there (no error when it is not)."""
    from rq.job import Job

    try:
        Job.fetch(job_id, connection=connection, serializer=JSONSerializer).cancel()
    except Exception:  # noqa: BLE001 - the job may be gone, running or done: nothing to cancel
        pass
