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
from app.sending import Sender, endpoint_of
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

    def run(item: str) -> str:
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


def test_a_fan_out_reads_its_deliveries_once_and_each_attempt_starts_in_one_script(
        services, redis_url):
    """Counted on a real connection: one read for the job, then per delivery a script that
    takes its lease, logs the attempt and reads the subscription, and one that ends it."""
    from app.services import Services, install
    from jobs.deliver import deliver_all
    from tests.test_store import CountingRedis

    sink = Sink().start()
    key = apikeys.create(services.redis, "counted")[0]
    for _ in range(6):
        subscriptions.create(services.redis, key.id, sink.url + "/hook", ["request.completed"])
    counted = Services(services.settings, CountingRedis.from_url(redis_url,
                                                                 decode_responses=True),
                       rq=services.rq)
    install(counted)
    try:
        for _ in range(2):  # the first loads the scripts and our key
            record, _ = store.create(services.redis, key_id=key.id, provider="local",
                                     input={"image_url": "x"})
            made = events.emit(services, record.id, "request.completed")
            counted.redis.calls.clear()
            deliver_all([[d, endpoint_of(sink.url)] for d in made])
    finally:
        install(services)
        counted.close_sender(wait=True)
    calls = counted.redis.calls
    assert calls["MGET"] == 1 and calls["EVALSHA"] == 2 * len(made), calls
    assert set(calls) == {"MGET", "EVALSHA", "ZADD"}, calls  # ZADD: holding them (a lane's too)
    for delivery_id in made:
        record = deliveries.get(services.redis, delivery_id)
        assert record.status == "succeeded" and len(record.attempts) == 1, record
    assert len(sink.received) == 2 * len(made)
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
    assert _run(Ahead(made[0], read[0])) == "nothing to do"
    assert deliveries.get(services.redis, made[0]).attempts == [{"error_class": None, "at": 1.0}]
    assert sink.received == []
    assert deliveries.lease(services.redis, made[0], 1) is not None  # the lease was dropped
    sink.stop()
