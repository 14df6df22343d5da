"""Subscriptions and outbound webhooks: signatures any Standard Webhooks library verifies,
the retry schedule, 410, 429 + Retry-After, timeouts, redirects, replay, recovery."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
import standardwebhooks
import svix.webhooks
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app import events
from app.models import Status
from app.signing.keys import b64url_decode
from app.store import deliveries
from app.store import requests as store
from tests.contract import check
from tests.sinks import Sink

SCHEDULE = [0, 0.05, 0.1, 0.15]


@pytest.fixture
def overrides(overrides):
    """Millisecond retry schedule, short timeouts, no jitter."""
    return {**overrides, "delivery_schedule": SCHEDULE, "delivery_overload_delay": 0.1,
            "delivery_timeout": 1.0, "delivery_connect_timeout": 1.0, "delivery_jitter": 0.0}


@pytest.fixture
def sink():
    """A recording webhook receiver on 127.0.0.1."""
    running = Sink().start()
    yield running
    running.stop()


def subscribe(http, url: str, events_: list[str] | None = None) -> dict:
    """Register ``url`` and return the subscription with its secret."""
    answer = http.post("/v1/subscriptions", json={"url": url, "events": events_ or ["request.*"]})
    assert answer.status_code == 201, answer.text
    check(answer, "POST", "/v1/subscriptions")
    return answer.json()


def finished_request(services, key_id: str, **fields) -> str:
    """A request record that has just COMPLETED."""
    record, _ = store.create(services.redis, key_id=key_id, input={"image_url": "x"},
                             provider="local", **fields)
    output = {"image": {"url": "http://x/files/a.png", "content_type": "image/png",
                        "file_name": "a.png", "file_size": 1, "width": 1, "height": 1}}
    # Put there directly, without its events: the tests announce what they need.
    store.transition(services.redis, record.id, Status.COMPLETED, (Status.IN_QUEUE,),
                     {"output": output}, announce=False)
    return record.id


def key_id_of(services, api_key: str) -> str:
    from app.store import apikeys

    return apikeys.authenticate(services.redis, api_key).id


def test_completed_event_verifies_with_standardwebhooks_svix_and_our_jwks(
        http, services, api_key, sink, run_jobs, live):
    secret = subscribe(http, sink.url)["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    request_id = finished_request(services, key_id_of(services, api_key))
    events.emit(services, request_id, "request.completed")
    run_jobs()
    assert len(sink.received) == 1
    got = sink.received[0]
    payload = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "request.completed"
    assert payload["data"]["request_id"] == request_id and payload["data"]["sequence"] == 1
    assert payload["data"]["output"]["image"]["url"].endswith("a.png")
    svix.webhooks.Webhook(secret).verify(got.body, got.headers)
    assert got.headers["User-Agent"].startswith("posehook/")
    assert got.headers["Content-Type"] == "application/json"
    v1a = [s for s in got.headers["webhook-signature"].split(" ") if s.startswith("v1a,")][0]
    jwk = httpx.get(f"{live.url}/.well-known/jwks.json").json()["keys"][0]
    signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body
    Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(
        base64.b64decode(v1a[4:]), signed)


def test_each_event_announces_its_own_status_in_sequence(http, services, api_key, sink,
                                                         run_jobs):
    # The record is already COMPLETED when its queued and started events are built, as
    # happens when a fast job overtakes the fan-out: each event still says what happened.
    secret = subscribe(http, sink.url)["secret"]
    request_id = finished_request(services, key_id_of(services, api_key))
    for event_type in ("request.queued", "request.started", "request.completed"):
        events.emit(services, request_id, event_type)
    run_jobs()
    got = sorted((standardwebhooks.Webhook(secret).verify(r.body, r.headers)
                  for r in sink.received), key=lambda p: p["data"]["sequence"])
    assert [(p["type"], p["data"]["status"], "output" in p["data"]) for p in got] == [
        ("request.queued", "IN_QUEUE", False), ("request.started", "IN_PROGRESS", False),
        ("request.completed", "COMPLETED", True)]
    assert [p["data"]["sequence"] for p in got] == [1, 2, 3]


def test_filters_choose_the_events(http, services, api_key, sink, run_jobs):
    subscribe(http, sink.url, ["request.failed"])
    request_id = finished_request(services, key_id_of(services, api_key))
    events.emit(services, request_id, "request.completed")
    run_jobs()
    assert sink.received == []


def test_retries_follow_the_schedule_then_succeed(http, services, api_key, sink, run_jobs):
    sink.script = [(500, {}, b"no", 0), (500, {}, b"no", 0)]
    sub = subscribe(http, sink.url)
    request_id = finished_request(services, key_id_of(services, api_key))
    events.emit(services, request_id, "request.completed")
    run_jobs()
    times = [r.at for r in sink.received]
    assert len(times) == 3
    assert times[1] - times[0] >= SCHEDULE[1] and times[2] - times[1] >= SCHEDULE[2]
    assert len({r.headers["webhook-id"] for r in sink.received}) == 1
    log = http.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["deliveries"][0]
    assert log["status"] == "succeeded"
    assert [a["status_code"] for a in log["attempts"]] == [500, 500, 204]
    assert log["attempts"][0]["response"] == "no" and log["attempts"][0]["duration_ms"] >= 0


def test_exhausted_delivery_fails_and_redelivery_keeps_the_id(http, services, api_key, sink,
                                                               run_jobs):
    sink.default = (503, {}, b"", 0)
    subscribe(http, sink.url)
    request_id = finished_request(services, key_id_of(services, api_key))
    delivery_id = events.emit(services, request_id, "request.completed")[0]
    run_jobs()
    assert len(sink.received) == len(SCHEDULE)
    assert deliveries.get(services.redis, delivery_id).status == "failed"
    sink.default = (204, {}, b"", 0)
    answer = http.post(f"/v1/deliveries/{delivery_id}/redeliver")
    assert answer.status_code == 202
    run_jobs()
    assert sink.received[-1].headers["webhook-id"] == sink.received[0].headers["webhook-id"]
    assert http.get(f"/v1/deliveries/{delivery_id}").json()["status"] == "succeeded"


def test_recover_resends_every_failure_since_a_time(http, services, api_key, sink, run_jobs):
    sink.default = (500, {}, b"", 0)
    sub = subscribe(http, sink.url)
    key_id = key_id_of(services, api_key)
    for _ in range(2):
        events.emit(services, finished_request(services, key_id), "request.completed")
    run_jobs()
    sink.default = (204, {}, b"", 0)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    answer = http.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": since})
    assert answer.status_code == 202 and len(answer.json()["redelivered"]) == 2
    run_jobs()
    assert sink.received[-1].headers["webhook-id"] != sink.received[-2].headers["webhook-id"]
    old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 15 * 86400))
    assert http.post(f"/v1/subscriptions/{sub['id']}/recover",
                     json={"since": old}).status_code == 422


def test_410_disables_the_subscription_and_tells_the_others(http, services, api_key, run_jobs):
    gone, other = Sink(default=(410, {}, b"", 0)).start(), Sink().start()
    try:
        dead = subscribe(http, gone.url)
        subscribe(http, other.url, ["*"])
        events.emit(services, finished_request(services, key_id_of(services, api_key)),
                    "request.completed")
        run_jobs()
        assert len(gone.received) == 1
        view = http.get(f"/v1/subscriptions/{dead['id']}").json()
        assert view["enabled"] is False and "410" in view["disabled_reason"]
        types = [json.loads(r.body)["type"] for r in other.received]
        assert sorted(types) == ["endpoint.disabled", "request.completed"]
    finally:
        gone.stop()
        other.stop()


def test_429_waits_at_least_the_overload_delay_and_honours_retry_after(
        http, services, api_key, sink, run_jobs):
    sink.script = [(429, {"Retry-After": "1"}, b"", 0)]
    subscribe(http, sink.url)
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    gap = sink.received[1].at - sink.received[0].at
    # scheduled 0.05 → overload minimum 0.1 → Retry-After 1 clamped to 2 × 0.1.
    assert 0.2 <= gap < 0.9


def test_timeouts_redirects_and_huge_answers_are_failures(http, services, api_key, sink,
                                                          run_jobs):
    sink.script = [(204, {}, b"", 2.5), (302, {"Location": "/elsewhere"}, b"", 0),
                   (500, {}, b"x" * 1_000_000, 0)]
    sub = subscribe(http, sink.url)
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    log = http.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["deliveries"][0]
    attempts = log["attempts"]
    assert attempts[0]["error_class"] == "timeout"
    assert attempts[1]["status_code"] == 302 and attempts[1]["error_class"] == "redirect"
    assert len(attempts[2]["response"]) == 20_000
    assert all(r.path == "/hook" for r in sink.received)
    assert log["status"] == "succeeded"


def test_failing_for_the_whole_window_disables(http, services, api_key, sink, run_jobs, app):
    sink.default = (500, {}, b"", 0)
    sub = subscribe(http, sink.url)
    from app.store import subscriptions

    # Failing for the whole window, the last failure a minute ago: no quiet spell to forgive.
    subscriptions.update(services.redis, sub["id"],
                         failing_since=time.time() - services.settings.delivery_disable_after,
                         last_failure_at=time.time() - 60)
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    assert http.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is False


def test_per_request_webhook_is_signed_with_the_keys_secret(http, services, api_key, sink,
                                                            run_jobs):
    secret = http.get("/v1/webhook-secret").json()["secret"]
    request_id = finished_request(services, key_id_of(services, api_key), webhook_url=sink.url)
    events.emit(services, request_id, "request.started")  # not wanted by default
    events.emit(services, request_id, "request.completed")
    run_jobs()
    assert len(sink.received) == 1
    payload = standardwebhooks.Webhook(secret).verify(sink.received[0].body,
                                                     sink.received[0].headers)
    assert payload["data"]["sequence"] == 2


def test_fal_webhook_gets_a_fal_format_callback(http, services, api_key, sink, run_jobs):
    from app.signing import fal

    request_id = finished_request(services, key_id_of(services, api_key), fal_webhook=sink.url)
    events.emit(services, request_id, "request.completed")
    run_jobs()
    got = sink.received[0]
    assert fal.verify(got.body, got.headers, [services.signing_key.public_key()]) == request_id
    body = json.loads(got.body)
    assert body["status"] == "OK" and body["payload"]["image"]["file_name"] == "a.png"


def test_secret_rotation_signs_with_both_secrets(http, services, api_key, sink, run_jobs):
    old = subscribe(http, sink.url)
    new = http.post(f"/v1/subscriptions/{old['id']}/rotate-secret").json()
    assert new["secret"] != old["secret"]
    assert "secret" not in http.get(f"/v1/subscriptions/{old['id']}").json()
    http.post(f"/v1/subscriptions/{old['id']}/test")
    run_jobs()
    got = sink.received[0]
    assert json.loads(got.body)["type"] == "test.ping"
    for secret in (old["secret"], new["secret"]):
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)


def test_subscriptions_belong_to_their_key(http, live, services, sink):
    from app.store import apikeys

    sub = subscribe(http, sink.url)
    other = {"Authorization": f"Key {apikeys.create(services.redis, 'other')[1]}"}
    assert httpx.get(f"{live.url}/v1/subscriptions/{sub['id']}", headers=other).status_code == 404
    assert httpx.get(f"{live.url}/v1/subscriptions", headers=other).json()["subscriptions"] == []
    assert http.patch(f"/v1/subscriptions/{sub['id']}", json={"events": ["*"]}).json()[
        "events"] == ["*"]
    assert http.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
    assert http.get(f"/v1/subscriptions/{sub['id']}").status_code == 404


@pytest.mark.parametrize("body", [
    {"url": "http://10.0.0.5/hook", "events": ["*"]},
    {"url": "http://169.254.169.254/latest", "events": ["*"]},
    {"url": "ftp://example.com/hook", "events": ["*"]},
    {"url": "https://example.com/hook", "events": ["request.exploded"]},
    {"url": "https://example.com/hook", "events": []},
])
def test_bad_subscriptions_are_422(http, body):
    answer = http.post("/v1/subscriptions", json=body)
    assert answer.status_code == 422, answer.text


def test_a_worker_killed_mid_delivery_loses_nothing(http, services, api_key, sink, run_jobs,
                                                    redis_url, overrides):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from jobs.deliver import sweep_deliveries

    sink.script = [(204, {}, b"", 3)]  # the first attempt hangs: the worker dies inside it
    subscribe(http, sink.url)
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(root),
           "POSEHOOK_DATA_DIR": overrides["data_dir"], "POSEHOOK_ALLOWED_CIDRS": "127.0.0.0/8",
           "POSEHOOK_DELIVERY_TIMEOUT": "2", "POSEHOOK_DELIVERY_CONNECT_TIMEOUT": "1"}
    worker = subprocess.Popen([str(Path(sys.executable).parent / "rq"), "worker", "--serializer",
                               "json", "--url", redis_url, "delivery"], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 30
        while not sink.received:
            assert time.time() < deadline, "the worker never attempted the delivery"
            time.sleep(0.05)
    finally:
        # RQ's work horse starts its own session: kill it and the worker, as a crash would.
        import psutil

        for child in psutil.Process(worker.pid).children(recursive=True):
            child.kill()
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert deliveries.get(services.redis, delivery_id).status == "pending"
    # The dead worker's lease outlasts its job timeout (1 + 2 × 2 + 5 s) by 10 s.
    deadline = time.time() + 45
    while sweep_deliveries(services, time.time() + 5) == 0:
        assert time.time() < deadline, (
            "the sweeper never picked the delivery up: "
            f"{services.redis.zrange('posehook:deliveries:due', 0, -1, withscores=True)} "
            f"{services.redis.pttl('posehook:delivery-lock:' + delivery_id)} {time.time()}")
        time.sleep(0.5)
    run_jobs()
    record = deliveries.get(services.redis, delivery_id)
    assert record.status == "succeeded"
    assert [a["error_class"] for a in record.attempts] == ["worker_lost", None]
    assert len({r.headers["webhook-id"] for r in sink.received}) == 1
    assert len(sink.received) >= 2


def test_a_retry_after_that_is_not_ascii_digits_does_not_stop_the_delivery(
        http, services, api_key, sink, run_jobs):
    sink.script = [(429, {"Retry-After": "²"}, b"", 0)]  # "²".isdigit() is True
    subscribe(http, sink.url)
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    run_jobs()
    record = deliveries.get(services.redis, delivery_id)
    assert record.status == "succeeded"
    assert [a["status_code"] for a in record.attempts] == [429, 204]
    assert record.attempts[0]["retry_after"] == "²"


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A1", "0", "201", "1e2", "00000000050"])
def test_the_delivery_log_limit_must_be_ascii_digits_in_range(http, sink, limit):
    sub = subscribe(http, sink.url)
    answer = http.get(f"/v1/subscriptions/{sub['id']}/deliveries?limit={limit}")
    assert answer.status_code == 422 and "limit" in answer.json()["message"]
    check(answer, "GET", "/v1/subscriptions/{subscription_id}/deliveries")


def _stored(services, subscription_id: str):
    from app.store import subscriptions

    return subscriptions.get(services.redis, subscription_id)


def test_changes_made_during_an_attempt_survive_it(http, services, api_key, sink, run_jobs):
    sink.default = (500, {}, b"", 0)
    sub = subscribe(http, sink.url)
    rotated = {}

    def change_now(_):
        if not rotated:  # while the first attempt waits for its answer
            rotated.update(http.post(f"/v1/subscriptions/{sub['id']}/rotate-secret").json())
            http.patch(f"/v1/subscriptions/{sub['id']}", json={"events": ["*"]})

    sink.on_request = change_now
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    stored = _stored(services, sub["id"])
    assert stored.events == ["*"] and stored.secrets[0]["secret"] == rotated["secret"]
    assert stored.failing_since is not None
    last = sink.received[-1]
    standardwebhooks.Webhook(rotated["secret"]).verify(last.body, last.headers)


def test_a_subscription_deleted_during_an_attempt_stays_deleted(http, services, api_key, sink,
                                                                run_jobs):
    sink.default = (410, {}, b"", 0)
    sub = subscribe(http, sink.url)
    sink.on_request = lambda _: http.delete(f"/v1/subscriptions/{sub['id']}")
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    run_jobs()
    assert _stored(services, sub["id"]) is None
    assert http.get(f"/v1/subscriptions/{sub['id']}").status_code == 404
    assert http.get("/v1/subscriptions").json()["subscriptions"] == []
    assert deliveries.get(services.redis, delivery_id).status == "failed"


def test_changes_to_a_deleted_subscription_write_nothing(services):
    from app.store import subscriptions

    sub = subscriptions.create(services.redis, "k", "http://127.0.0.1/x", ["*"])
    subscriptions.delete(services.redis, sub)
    assert subscriptions.update(services.redis, sub.id, enabled=False) is None
    assert subscriptions.rotate_secret(services.redis, sub.id, 60) is None
    assert subscriptions.mark_failing(services.redis, sub.id, time.time(), 60) is None
    assert subscriptions.mark_healthy(services.redis, sub.id) is None
    assert subscriptions.disable(services.redis, sub.id, "gone") is None
    assert subscriptions.get(services.redis, sub.id) is None


def test_an_old_failure_followed_by_quiet_days_is_forgiven(http, services, api_key, sink,
                                                           run_jobs):
    from app.store import subscriptions

    sink.default = (500, {}, b"", 0)
    sub = subscribe(http, sink.url)
    long_ago = time.time() - services.settings.delivery_disable_after - 3600
    subscriptions.update(services.redis, sub["id"], failing_since=long_ago,
                         last_failure_at=long_ago)
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    view = http.get(f"/v1/subscriptions/{sub['id']}").json()
    assert view["enabled"] is True and view["failing_since"] > time.time() - 60
    assert "last_failure_at" not in view


def test_a_trickling_answer_is_cut_at_the_total_deadline(http, services, api_key, sink,
                                                         run_jobs):
    # 60 bytes, one every 50 ms: each read is quick, the answer takes 3 s (deadline 1 s).
    sink.script = [(200, {}, b"x" * 60, 0, 0.05)]
    sub = subscribe(http, sink.url)
    events.emit(services, finished_request(services, key_id_of(services, api_key)),
                "request.completed")
    run_jobs()
    log = http.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["deliveries"][0]
    first = log["attempts"][0]
    assert first["error_class"] == "timeout" and first["duration_ms"] < 2000
    assert log["status"] == "succeeded"
    assert sink.received[0].headers["Accept-Encoding"] == "identity"


def test_an_attempt_holds_its_lease_longer_than_its_job_may_run(http, services, api_key, sink,
                                                                run_jobs):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from app import queues
    from app.store.keys import key_for_delivery_lock

    subscribe(http, sink.url)
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    job = Job.fetch(queues.deliver_all_job_id(delivery_id), connection=services.rq,
                    serializer=JSONSerializer)
    # One endpoint: one wave of attempts, and one more while the job waits for room.
    longest = services.settings.delivery_job_timeout  # what one attempt may take
    assert job.timeout == 2 * longest
    held = []
    sink.on_request = lambda _: held.append(services.redis.pttl(key_for_delivery_lock(delivery_id)))
    run_jobs()
    assert held[0] > longest * 1000


def test_a_lapsed_lease_cannot_release_the_next_holder(services):
    first = deliveries.lease(services.redis, "dlv_x", 0.05)
    time.sleep(0.1)
    second = deliveries.lease(services.redis, "dlv_x", 10)
    assert first and second and first != second
    assert deliveries.release(services.redis, "dlv_x", first) is False
    assert deliveries.lease(services.redis, "dlv_x", 10) is None  # the second still holds it
    assert deliveries.release(services.redis, "dlv_x", second) is True


def test_retries_and_redelivery_follow_a_patched_url(http, services, api_key, sink, run_jobs):
    moved = Sink().start()
    try:
        sink.default = (500, {}, b"", 0)
        sub = subscribe(http, sink.url)
        # The first attempt fails; the subscriber moves before the retries.
        sink.on_request = lambda _: http.patch(f"/v1/subscriptions/{sub['id']}",
                                               json={"url": moved.url})
        delivery_id = events.emit(services,
                                  finished_request(services, key_id_of(services, api_key)),
                                  "request.completed")[0]
        run_jobs()
        assert len(sink.received) == 1 and len(moved.received) == 1
        log = http.get(f"/v1/deliveries/{delivery_id}").json()
        assert [a["url"] for a in log["attempts"]] == [sink.url, moved.url]
        check_redelivery = http.post(f"/v1/deliveries/{delivery_id}/redeliver")
        assert check_redelivery.status_code == 202
        run_jobs()
        assert len(sink.received) == 1 and len(moved.received) == 2
    finally:
        moved.stop()


def test_redelivery_while_an_attempt_runs_is_a_conflict(http, services, api_key, sink):
    subscribe(http, sink.url)
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    token = deliveries.lease(services.redis, delivery_id, 30)  # an attempt under way
    answer = http.post(f"/v1/deliveries/{delivery_id}/redeliver")
    assert answer.status_code == 409
    check(answer, "POST", "/v1/deliveries/{delivery_id}/redeliver")
    deliveries.release(services.redis, delivery_id, token)
    assert http.post(f"/v1/deliveries/{delivery_id}/redeliver").status_code == 202


def _failed_deliveries(services, subscription_id: str, count: int, status: str = "failed",
                       ago: float = 600):
    """Store ``count`` deliveries made ``ago`` seconds ago onwards, 10 ms apart."""
    now = time.time()
    for i in range(count):
        record = deliveries.Delivery(id=deliveries.new_id(), event_id=f"msg_{i}", event_type="t",
                                     kind="subscription", url="http://127.0.0.1:9/x",
                                     key_id="k", body="{}", created_at=now - ago + i * 0.01,
                                     subscription_id=subscription_id, status=status)
        deliveries.create(services.redis, record)
        deliveries.save(services.redis, record)


def test_recover_sends_a_bounded_batch_and_says_what_remains(http, services, sink):
    from app.api.subscriptions import RECOVER_MAX

    sub = subscribe(http, sink.url)
    _failed_deliveries(services, sub["id"], RECOVER_MAX + 5)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    url = f"/v1/subscriptions/{sub['id']}/recover"
    first = http.post(url, json={"since": since})
    check(first, "POST", "/v1/subscriptions/{subscription_id}/recover")
    body = first.json()
    assert body["count"] == len(body["redelivered"]) == RECOVER_MAX and body["more"] is True
    second = http.post(url, json={"since": body["next_since"]}).json()
    assert second["count"] == 5 and second["more"] is False and second["next_since"] is None
    assert not set(second["redelivered"]) & set(body["redelivered"])


def test_recover_stops_looking_after_a_bounded_scan(http, services, sink):
    from app.api.subscriptions import RECOVER_SCAN

    sub = subscribe(http, sink.url)
    _failed_deliveries(services, sub["id"], RECOVER_SCAN, status="succeeded")
    _failed_deliveries(services, sub["id"], 1, ago=60)  # after every succeeded one
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    url = f"/v1/subscriptions/{sub['id']}/recover"
    first = http.post(url, json={"since": since}).json()
    assert first["count"] == 0 and first["more"] is True
    second = http.post(url, json={"since": first["next_since"]}).json()
    assert second["count"] == 1 and second["more"] is False


def test_an_unexpected_error_in_an_attempt_is_logged_and_retries_end(http, services, api_key,
                                                                       sink, run_jobs):
    from app.store import subscriptions

    sub = subscribe(http, sink.url)
    # A record our own code cannot sign with: the attempt raises inside the job.
    subscriptions.update(services.redis, sub["id"],
                         secrets=[{"secret": None, "expires_at": None}])
    delivery_id = events.emit(services, finished_request(services, key_id_of(services, api_key)),
                              "request.completed")[0]
    run_jobs()
    record = deliveries.get(services.redis, delivery_id)
    assert record.status == "failed"
    assert [a["error_class"] for a in record.attempts] == ["internal_error"] * len(SCHEDULE)


def test_the_sweeper_gives_up_when_a_worker_died_in_the_last_attempt(services, sink):
    attempts = [{"at": time.time() - 60, "status_code": 500, "error_class": "http_status",
                 "duration_ms": 1}] * (len(SCHEDULE) - 1)
    attempts = [*attempts, {"at": time.time() - 60, "status_code": None,
                            "error_class": "in_progress", "duration_ms": 0}]
    record = deliveries.Delivery(id=deliveries.new_id(), event_id="msg_1", event_type="t",
                                 kind="request", url=sink.url, key_id="k", body="{}",
                                 created_at=time.time() - 60, attempts=attempts,
                                 next_attempt_at=time.time() - 30)
    deliveries.create(services.redis, record)
    deliveries.save(services.redis, record)
    from jobs.deliver import sweep_deliveries

    assert sweep_deliveries(services, time.time()) == 0
    swept = deliveries.get(services.redis, record.id)
    assert swept.status == "failed" and swept.attempts[-1]["error_class"] == "worker_lost"


def test_a_job_that_comes_before_the_delivery_is_due_sends_nothing(services, sink, run_jobs):
    from app import queues

    record = deliveries.Delivery(id=deliveries.new_id(), event_id="msg_1", event_type="t",
                                 kind="request", url=sink.url, key_id="k", body="{}",
                                 created_at=time.time(), next_attempt_at=time.time() + 300)
    deliveries.create(services.redis, record)
    queues.enqueue_delivery(services.rq, services.settings, record.id, trigger="sweep")
    run_jobs()
    assert sink.received == []
    assert deliveries.get(services.redis, record.id).status == "pending"
