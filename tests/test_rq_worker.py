"""The warm workers' RQ bookkeeping: fewer round trips per job, counted (not timed)."""

from __future__ import annotations

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from app import queues
from app.store.rq_worker import LeanWorker
from tests.test_store import CountingRedis

JOBS = 6


def _commands_per_job(worker_class, redis_url: str) -> float:
    connection = CountingRedis.from_url(redis_url)
    q = queues.queue(connection, queues.SETTLE)
    ended = len(q.finished_job_registry)
    for _ in range(JOBS):
        queues.enqueue(connection, queues.SETTLE, "time.time")
    connection.calls.clear()
    worker = worker_class([q], connection=connection, serializer=JSONSerializer)
    assert worker.work(burst=True, logging_level="WARNING")
    assert q.count == 0 and len(q.finished_job_registry) == ended + JOBS  # every job ran, and ended
    sent = sum(connection.calls.values())
    connection.close()
    return sent / JOBS


def test_a_lean_worker_runs_the_same_jobs_with_fewer_commands(redis_url, redis):
    plain = _commands_per_job(SimpleWorker, redis_url)
    lean = _commands_per_job(LeanWorker, redis_url)
    # RQ's heartbeat (3 commands, 3 times a job) and a repeated state write are what goes.
    assert lean <= plain - 6, (plain, lean)
