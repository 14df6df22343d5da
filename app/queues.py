"""Queue names, job paths and enqueue helpers: the one place that talks to RQ's queues.

Jobs are enqueued by dotted string on JSON-serialised queues, so the web process
never imports ``jobs`` or the engine, and a non-JSON argument fails at enqueue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from app.config import Settings

SUBMIT = "submit"
INFERENCE = "inference"
SETTLE = "settle"
DELIVERY = "delivery"
DELIVERY_RETRY = "delivery-retry"
MAINTENANCE = "maintenance"

FAST_QUEUES = (SUBMIT, SETTLE, DELIVERY, DELIVERY_RETRY, MAINTENANCE)

MAINTENANCE_INTERVAL = 60
"""Seconds between a worker's maintenance passes, where RQ retries taking a scheduler lock
that was still held when the worker started (the Procfile passes the same to ``rq worker``)."""

JOB_SUBMIT = "jobs.submit.submit"
JOB_INFER = "jobs.infer.infer"
JOB_SETTLE = "jobs.settle.settle"
JOB_DELIVER = "jobs.deliver.deliver"
JOB_SWEEP = "jobs.sweep.sweep"
JOB_ANNOUNCE = "jobs.settle.announce"
JOB_FAL_CANCEL = "jobs.reconcile.cancel_at_fal"


def rq_connection(url: str) -> Redis:
    """Return a byte-level Redis client for RQ (RQ needs undecoded responses)."""
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
        return q.enqueue(func, *args, unique=unique, at_front=at_front, **options).id
    except DuplicateJobError:
        return None


def enqueue_delivery(connection: Redis, settings: Settings, delivery_id: str, job_id: str, *,
                     retry: bool = False, delay: float = 0) -> str | None:
    """Enqueue one attempt of a delivery, with the job timeout its lease is derived from."""
    return enqueue(connection, DELIVERY_RETRY if retry else DELIVERY, JOB_DELIVER, delivery_id,
                   job_id=job_id, timeout=settings.delivery_job_timeout, delay=delay)


def announce(connection: Redis, request_id: str, event_type: str) -> str | None:
    """Enqueue the fan-out of one event of a request, at most once per (request, event)."""
    return enqueue(connection, SETTLE, JOB_ANNOUNCE, request_id, event_type,
                   job_id=f"announce-{event_type.split('.')[-1]}-{request_id}", unique=True)


def cancel_job(connection: Redis, job_id: str) -> None:
    """Cancel a queued job if it is still there (no error when it is not)."""
    from rq.job import Job

    try:
        Job.fetch(job_id, connection=connection, serializer=JSONSerializer).cancel()
    except Exception:  # noqa: BLE001 - the job may be gone, running or done: nothing to cancel
        pass
