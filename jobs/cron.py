"""The sweeper's clock: ``python -m jobs.cron`` enqueues ``jobs.sweep.sweep`` every 30 s.

The interval is ``POSEHOOK_SWEEP_INTERVAL`` (default 30 s), or ``--interval``.

RQ's ``rq cron`` enqueues with RQ's default (pickle) serializer whatever the workers use,
so our JSON workers could not even read its jobs. This loop enqueues through
:mod:`app.queues` instead. Several clocks may run (one per host): each interval, only the
one that takes the clock key enqueues, and never while the last sweep is still waiting
or running, so a slow sweep does not pile passes up.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from app import queues
from app.services import current
from app.store import clock

UNFINISHED = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)

log = logging.getLogger(__name__)


def tick(connection: Redis, interval: float) -> str | None:
    """Enqueue one sweep if this interval has none and the last one is done; return its id."""
    if not clock.take_interval(connection, interval):
        return None  # another clock enqueued this interval's sweep
    last = clock.last_sweep(connection)
    if last:
        try:
            status = Job.fetch(last, connection=connection,
                               serializer=JSONSerializer).get_status()
        except Exception:  # noqa: BLE001 - the job expired or vanished: nothing to wait for
            status = None
        if status in UNFINISHED:
            log.info("the last sweep (%s) is still %s; not enqueuing another", last, status)
            return None
    job_id = queues.enqueue_sweep(connection)
    clock.remember_sweep(connection, job_id or "")
    return job_id


def main(argv: list[str] | None = None) -> None:
    """Enqueue a sweep every ``--interval`` seconds until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between sweeps (default: POSEHOOK_SWEEP_INTERVAL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    svc = current()
    interval = args.interval or svc.settings.sweep_interval
    log.info("sweeping every %.1f s", interval)
    while not stop.is_set():
        try:
            job_id = tick(svc.rq, interval)
            if job_id:
                log.info("enqueued sweep %s", job_id)
        except Exception:  # noqa: BLE001 - a Redis blip must not stop the clock
            log.warning("could not enqueue the sweep", exc_info=True)
        stop.wait(interval)


if __name__ == "__main__":
    main()
