"""The sweeper heals what a crash leaves: lost workers, vanished jobs, unsettled callbacks."""

from __future__ import annotations

import time

from app import queues
from app.models import Status
from app.store import callbacks, tracking
from app.store import requests as store
from jobs import sweep


def _running(services, attempts: int, lease_until: float) -> str:
    record, _ = store.create(services.redis, key_id="k", input={"image_url": "x"},
                             provider="local")
    store.update(services.redis, record.id, provider_ref=record.id)
    store.transition(services.redis, record.id, Status.IN_PROGRESS, (Status.IN_QUEUE,),
                     {"attempts": str(attempts), "started_at": repr(time.time())},
                     lease_until=lease_until)
    return record.id


def test_lost_worker_with_attempts_left_is_queued_again(services):
    request_id = _running(services, attempts=1, lease_until=time.time() - 1)
    assert sweep.recover_lost_workers(services, time.time()) == 1
    record = store.get(services.redis, request_id)
    assert record.status is Status.IN_QUEUE
    assert tracking.queue_position(services.redis, request_id) == 0
    jobs = queues.queue(services.rq, queues.INFERENCE).job_ids
    assert jobs == [f"infer-{request_id}-1"]


def test_lost_worker_out_of_attempts_fails_with_the_reason(services):
    request_id = _running(services, attempts=2, lease_until=time.time() - 1)
    sweep.recover_lost_workers(services, time.time())
    record = store.get(services.redis, request_id)
    assert record.status is Status.FAILED
    assert record.error["type"] == "worker_lost"
    assert tracking.expired_leases(services.redis, time.time()) == []


def test_a_live_lease_is_left_alone(services):
    request_id = _running(services, attempts=1, lease_until=time.time() + 60)
    assert sweep.recover_lost_workers(services, time.time()) == 0
    assert store.get(services.redis, request_id).status is Status.IN_PROGRESS


def test_a_queued_request_whose_job_vanished_is_submitted_again(services):
    record, _ = store.create(services.redis, key_id="k", input={"image_url": "x"},
                             provider="local")
    assert sweep.requeue_stale(services, time.time() + sweep.STALE_AFTER + 1) == 1
    assert queues.queue(services.rq, queues.SUBMIT).job_ids == [f"submit-{record.id}"]
    # A second pass while that job still waits adds nothing.
    assert sweep.requeue_stale(services, time.time() + sweep.STALE_AFTER + 1) == 0


def test_a_stored_but_unsettled_callback_is_settled_again(services):
    cid, _ = callbacks.persist(services.redis, "r1", b'{"status":"OK"}', {}, "local")
    assert sweep.resettle(services, time.time()) == 0  # fresh: its own settle job may still run
    assert sweep.resettle(services, time.time() + sweep.STALE_AFTER + 1) == 1
    assert len(queues.queue(services.rq, queues.SETTLE).job_ids) == 1


def test_the_clock_enqueues_one_sweep_our_json_workers_run(services, run_jobs):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from jobs.cron import tick

    job_id = tick(services.rq, interval=0.3)
    assert job_id is not None
    assert tick(services.rq, interval=0.3) is None  # this interval's sweep is enqueued
    time.sleep(0.35)
    assert tick(services.rq, interval=0.3) is None  # the last one has not run yet
    run_jobs()
    job = Job.fetch(job_id, connection=services.rq, serializer=JSONSerializer)
    assert job.get_status() == "finished"
    assert set(job.return_value()) >= {"lost_workers", "deliveries", "reconciled"}
    time.sleep(0.35)
    assert tick(services.rq, interval=0.3) not in (None, job_id)


def test_the_clock_process_sweeps_until_stopped(services, redis_url):
    import os
    import signal
    import subprocess
    import sys

    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from tests.stack import ROOT

    maintenance = queues.queue(services.rq, queues.MAINTENANCE)

    request_id = _running(services, attempts=1, lease_until=time.time() - 1)
    clock = subprocess.Popen([sys.executable, "-m", "jobs.cron"], cwd=ROOT,
                             env={**os.environ, "REDIS_URL": redis_url,
                                  "POSEHOOK_SWEEP_INTERVAL": "0.2"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while store.get(services.redis, request_id).status is not Status.IN_QUEUE:
            assert time.time() < deadline and clock.poll() is None, clock.stdout.read1()
            # A sweep it enqueued heals the lost worker (the retried inference is left queued).
            SimpleWorker([maintenance], connection=services.rq, serializer=JSONSerializer).work(
                burst=True, logging_level="WARNING")
            time.sleep(0.1)
    finally:
        clock.send_signal(signal.SIGTERM)
        assert clock.wait(10) == 0


def test_a_terminal_event_lost_in_a_crash_is_sent_by_the_sweeper_once(services, run_jobs):
    import json

    from app import events
    from app.lifecycle import settle as apply
    from app.store import subscriptions
    from tests.sinks import Sink

    sink = Sink().start()
    try:
        subscriptions.create(services.redis, "k", sink.url, ["request.completed"])
        request_id = _running(services, attempts=1, lease_until=time.time() + 60)
        # The settle worker dies right after the state change, before the fan-out.
        assert store.transition(services.redis, request_id, Status.COMPLETED,
                                (Status.IN_PROGRESS,), {"output": {"image": {"url": "u"}}},
                                announce=False) is not None
        assert tracking.events_owed(services.redis, time.time() + 1) == [request_id]
        assert apply(services, request_id, {"status": "OK", "payload": {}}, "local") == "ignored"
        assert events.announce_owed(services, time.time() + 1) == 1
        assert events.announce_owed(services, time.time() + 1) == 0  # paid
        run_jobs()
        got = [json.loads(r.body) for r in sink.received]
        assert [(g["type"], g["data"]["request_id"]) for g in got] == [
            ("request.completed", request_id)]
        # A normal settle pays its event at once.
        other = _running(services, attempts=1, lease_until=time.time() + 60)
        assert apply(services, other, {"status": "OK", "payload": {}}, "local") == \
            "request.completed"
        assert tracking.events_owed(services.redis, time.time() + 1) == []
    finally:
        sink.stop()
