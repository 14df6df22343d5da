"""Fan-out: one event's deliveries go out side by side; a slow endpoint holds only its lane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app import events
from app.lanes import Sender
from app.sending import endpoint_of
from app.store import apikeys, attempts, deliveries, subscriptions
from app.store import requests as store
from tests.sinks import Sink

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 5
CAP = 2


def _wait(condition, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_the_endpoint_is_scheme_host_and_port():
    assert endpoint_of("https://User:pw@Hooks.Example.com:8443/a?b=1") == \
        "https://hooks.example.com:8443"
    assert endpoint_of("http://127.0.0.1:9000/x") != endpoint_of("http://127.0.0.1:9001/x")


def test_a_full_lane_gives_items_back_and_the_others_still_run():
    gate, ran = threading.Event(), []

    def run(item: str, _later) -> str:
        if item.startswith("slow"):
            gate.wait(10)
        ran.append(item)
        return item

    sender = Sender(run, threads=3, per_endpoint=1, backlog=1)
    futures, over = sender.submit([("slow-1", "a"), ("slow-2", "a"), ("slow-3", "a"),
                                   ("fast-1", "b"), ("fast-2", "b")])
    assert over == ["slow-3"]
    assert [f.result(10) for f in futures[2:]] == ["fast-1", "fast-2"]  # "a" still hangs
    _wait(lambda: sender.in_flight() == 2, "lane b never emptied")
    gate.set()
    assert [f.result(10) for f in futures[:2]] == ["slow-1", "slow-2"]
    assert ran == ["fast-1", "fast-2", "slow-1", "slow-2"]
    sender.close()


def _delivery_worker(redis_url: str, overrides: dict) -> subprocess.Popen:
    """The Procfile's delivery worker (its class and queue) in a process of its own."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
           "POSEHOOK_DATA_DIR": overrides["data_dir"], "POSEHOOK_ALLOWED_CIDRS": "127.0.0.0/8",
           "POSEHOOK_DELIVERY_TIMEOUT": "1", "POSEHOOK_DELIVERY_CONNECT_TIMEOUT": "1",
           "POSEHOOK_DELIVERY_THREADS": "4", "POSEHOOK_DELIVERY_PER_ENDPOINT": str(CAP)}
    return subprocess.Popen([str(Path(sys.executable).parent / "rq"), "worker", "-w",
                             "jobs.fast_worker.Worker", "--serializer", "json", "--url",
                             redis_url, "delivery"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _events_to(services, *sinks: Sink, count: int = EVENTS) -> list[str]:
    """Subscribe each sink to request.completed, then emit it for ``count`` requests."""
    key = apikeys.create(services.redis, "fanout")[0]
    for sink in sinks:
        subscriptions.create(services.redis, key.id, sink.url + "/hook", ["request.completed"])
    made = []
    for _ in range(count):
        record, _ = store.create(services.redis, key_id=key.id, provider="local",
                                 input={"image_url": "x"})
        made += events.emit(services, record.id, "request.completed")
    return made


@pytest.fixture
def overrides(overrides):
    return {**overrides, "delivery_timeout": 1.0, "delivery_connect_timeout": 1.0}


def test_a_hanging_endpoint_holds_its_cap_and_a_killed_worker_loses_nothing(
        services, redis_url, overrides, run_jobs):
    from jobs.deliver import sweep_deliveries

    release = threading.Event()
    slow = Sink(on_request=lambda _: release.wait(60)).start()
    fast = Sink().start()
    made = _events_to(services, slow, fast)
    worker = _delivery_worker(redis_url, overrides)
    try:
        # Every event reaches the fast endpoint while the slow one has not answered once.
        _wait(lambda: len(fast.received) == EVENTS and len(slow.received) >= CAP,
              f"fast got {len(fast.received)}, slow {len(slow.received)}")
        assert len(slow.received) == CAP  # the others wait in its lane, not on the wire
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # a crash: two attempts in flight, three lined up
        worker.wait(10)
        release.set()
    slow_ids = [d for d in made if deliveries.get(services.redis, d).url == slow.url + "/hook"]
    assert all(deliveries.get(services.redis, d).status == "pending" for d in slow_ids)
    revived = 0

    def swept() -> bool:
        nonlocal revived
        revived += sweep_deliveries(services, time.time() + 5)
        return revived == EVENTS

    _wait(swept, "the sweeper did not revive every delivery the dead worker held", 60)
    run_jobs()
    outcomes = sorted(tuple(a["error_class"] or "ok" for a in
                            deliveries.get(services.redis, d).attempts) for d in slow_ids)
    assert outcomes == [("ok",)] * (EVENTS - CAP) + [("worker_lost", "ok")] * CAP
    assert all(deliveries.get(services.redis, d).status == "succeeded" for d in made)
    assert len({r.headers["webhook-id"] for r in slow.received}) == EVENTS
    slow.stop()
    fast.stop()


def test_a_warm_stop_sends_what_the_worker_took_before_it_ends(services, redis_url, overrides):
    release = threading.Event()
    slow = Sink(on_request=lambda _: release.wait(60)).start()
    made = _events_to(services, slow)
    worker = _delivery_worker(redis_url, overrides)
    try:
        _wait(lambda: len(slow.received) == CAP, f"slow got {len(slow.received)}")
        worker.send_signal(signal.SIGTERM)  # two in flight, three in the lane, none sent yet
        release.set()
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    for delivery_id in made:  # every one sent by the stopping worker, once, no sweeper
        record = deliveries.get(services.redis, delivery_id)
        assert record.status == "succeeded" and len(record.attempts) == 1, record
    assert len(slow.received) == EVENTS
    slow.stop()


def _behind_a_hanging_endpoint(services, count: int):
    """Subscribe a sink that never answers and emit ``count`` events to it; return the
    release to let it answer, the sink and the delivery ids (``CAP`` go on the wire, the
    rest wait in its lane, each attempt its 1 s timeout)."""
    release = threading.Event()
    slow = Sink(on_request=lambda _: release.wait(120)).start()
    return release, slow, _events_to(services, slow, count=count)


def test_deliveries_lined_up_behind_a_hanging_endpoint_stay_the_live_workers(
        services, redis_url, overrides):
    """A deep lane outlasts one lease: its worker holds it again, so the sweeper leaves it."""
    from jobs.deliver import sweep_deliveries

    release, slow, made = _behind_a_hanging_endpoint(services, 100)  # drains in about 50 s
    worker = _delivery_worker(redis_url, overrides)
    try:
        _wait(lambda: len(slow.received) >= CAP, "the slow endpoint was never reached")
        time.sleep(services.settings.delivery_lease + 8)  # overdue past the first hold
        untried = [d for d in made if not deliveries.get(services.redis, d).attempts]
        assert untried, "the lane drained: the test no longer shows a deep one"
        assert sweep_deliveries(services, time.time()) == 0
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        release.set()
        slow.stop()


def test_a_second_signal_stops_the_delivery_worker_without_draining_its_lanes(
        services, redis_url, overrides):
    from jobs.deliver import sweep_deliveries

    release, slow, made = _behind_a_hanging_endpoint(services, 60)  # a warm stop takes 30 s
    worker = _delivery_worker(redis_url, overrides)
    try:
        _wait(lambda: len(slow.received) >= CAP, "the slow endpoint was never reached")
        worker.send_signal(signal.SIGTERM)  # warm: it would send all 60 first
        time.sleep(1.5)  # RQ takes a second signal within a second for the same one
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)  # the attempts on the wire end within their 1 s timeout
        sent = len(slow.received)
        assert sent <= 3 * CAP, f"the cold stop still sent {sent} of 60"  # on the wire, +1 each
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        release.set()
    # What was dropped is still due in Redis: the sweeper sends it once its hold runs out.
    untried = [d for d in made if not deliveries.get(services.redis, d).attempts]
    assert untried and sweep_deliveries(
        services, time.time() + services.settings.delivery_lease + 6) >= len(untried)
    slow.stop()


def _one_lane(services, redis_url, count: int, script: list[tuple] = (),
              failing_first: bool = False):
    """Emit one event to ``count`` subscriptions of one sink and send it through one lane
    (``delivery_per_endpoint`` 1) on a counting connection, the first answer held until
    every delivery is lined up behind it. A warm-up event first loads the scripts and our
    key. Returns the counted round trips of the event, its deliveries and the sink."""
    from dataclasses import replace

    from app.services import Services, install
    from jobs.deliver import deliver_all
    from tests.test_store import CountingRedis

    gate = threading.Event()
    sink = Sink(on_request=lambda _: gate.wait(60)).start()
    key = apikeys.create(services.redis, "counted")[0]
    subs = [subscriptions.create(services.redis, key.id, sink.url + "/hook",
                                 ["request.completed"]) for _ in range(count)]
    counted = Services(replace(services.settings, delivery_per_endpoint=1),
                       CountingRedis.from_url(redis_url, decode_responses=True), rq=services.rq)
    install(counted)
    try:
        for warm_up in (True, False):
            record, _ = store.create(services.redis, key_id=key.id, provider="local",
                                     input={"image_url": "x"})
            made = events.emit(services, record.id, "request.completed")
            if not warm_up:
                gate.clear()
                sink.script = list(script)
                if failing_first:
                    first = deliveries.get(services.redis, made[0]).subscription_id
                    subscriptions.mark_failing(services.redis, first, time.time(), 3600)
            counted.redis.trips.clear()
            job = threading.Thread(target=deliver_all,
                                   args=([[d, endpoint_of(sink.url)] for d in made],))
            job.start()
            if not warm_up:
                _wait(lambda: counted.sender(None).in_flight() == count, "not lined up")
            gate.set()
            job.join(60)
    finally:
        install(services)
        counted.close_sender(wait=True)
    assert len(subs) == len(made) == count
    return list(counted.redis.trips), made, sink


def test_a_lane_ends_an_attempt_in_the_round_trip_that_starts_its_next(services, redis_url):
    """Counted on a real connection: one read for the job; per delivery one script that
    takes its lease, logs the attempt and reads the subscription, and its last save goes
    out with the next delivery's start; the lane's last delivery is saved alone."""
    trips, made, sink = _one_lane(services, redis_url, 6)
    scripts = [t for t in trips if "EVALSHA" in t]
    assert trips.count(("ZADD", "MGET")) == 1, trips
    assert scripts == [("EVALSHA",)] + [("EVALSHA", "EVALSHA")] * 5 + [("EVALSHA",)], trips
    assert set(trips) <= {("ZADD", "MGET"), ("EVALSHA",), ("EVALSHA", "EVALSHA"), ("ZADD",)}
    for delivery_id in made:
        record = deliveries.get(services.redis, delivery_id)
        assert record.status == "succeeded" and len(record.attempts) == 1, record
        assert deliveries.lease(services.redis, delivery_id, 1) is not None  # dropped
    assert len(sink.received) == 2 * len(made)
    sink.stop()


def test_only_a_plain_success_waits_for_the_next_start_and_the_last_one_does_not(
        services, redis_url):
    """A success that forgives its subscription's failures, a retry and the lane's last
    delivery are each saved at once; only the plain success before the retry waits for the
    next start (one pair of scripts in one round trip)."""
    answers = [(204, {}, b"", 0), (204, {}, b"", 0), (500, {}, b"", 0), (204, {}, b"", 0)]
    trips, made, sink = _one_lane(services, redis_url, 4, answers, failing_first=True)
    assert trips.count(("EVALSHA", "EVALSHA")) == 1, trips
    records = [deliveries.get(services.redis, d) for d in made]
    assert [r.status for r in records] == ["succeeded", "succeeded", "pending", "succeeded"]
    assert records[2].attempts[0]["status_code"] == 500 and records[2].next_attempt_at
    healed = subscriptions.get(services.redis, records[0].subscription_id)
    assert (healed.failing_since, healed.last_failure_at) == (None, None)
    for delivery_id in made:
        assert deliveries.lease(services.redis, delivery_id, 1) is not None
    sink.stop()


def test_a_crash_before_a_success_is_saved_leaves_a_lost_attempt_sent_again(
        services, run_jobs):
    """Between the POST and the save that goes with the lane's next start, the attempt is
    in progress under its lease, as while it was on the wire: a worker that dies there (the
    save never made) leaves it to the sweeper, which counts it lost and sends it again."""
    from app.store.keys import key_for_delivery_lock
    from jobs.deliver import Ahead, _run, sweep_deliveries

    sink = Sink().start()
    made = _events_to(services, sink, count=1)
    read = attempts.hold_and_read(services.redis, made, time.time() + 60)
    later = _run(Ahead(made[0], read[0]), None)  # answered 204; its save left to the lane
    assert later.result == "delivered" and not later.written and len(sink.received) == 1
    record = deliveries.get(services.redis, made[0])
    assert record.status == "pending" and [a["error_class"] for a in record.attempts] == \
        ["in_progress"]
    assert deliveries.lease(services.redis, made[0], 1) is None  # still held
    services.redis.pexpire(key_for_delivery_lock(made[0]), 1)  # the dead worker's lease ends
    _wait(lambda: sweep_deliveries(services, time.time() + 60) == 1, "not revived")
    run_jobs()
    record = deliveries.get(services.redis, made[0])
    assert record.status == "succeeded", record
    assert [a["error_class"] for a in record.attempts] == ["worker_lost", None]
    assert len({r.headers["webhook-id"] for r in sink.received}) == 1 == len(made)
    assert len(sink.received) == 2
    sink.stop()


def test_a_delivery_changed_after_its_job_read_it_is_attempted_as_it_is_now(services):
    """The read-ahead start writes only over the record it read: a change made since (here
    another attempt that already succeeded) stands, and nothing is sent again."""
    from jobs.deliver import Ahead, _run

    sink = Sink().start()
    made = _events_to(services, sink, count=1)
    read = attempts.hold_and_read(services.redis, made, time.time() + 60)
    record = deliveries.get(services.redis, made[0])
    record.status, record.attempts = "succeeded", [{"error_class": None, "at": 1.0}]
    deliveries.save(services.redis, record)
    assert _run(Ahead(made[0], read[0]), None) == "nothing to do"
    assert deliveries.get(services.redis, made[0]).attempts == [{"error_class": None, "at": 1.0}]
    assert sink.received == []
    assert deliveries.lease(services.redis, made[0], 1) is not None  # the lease was dropped
    sink.stop()
