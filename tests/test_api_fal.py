"""The fal proxy endpoint: who may call it, where it may go, what it passes on."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import pytest

from app.models import Status
from app.signing import fal as fal_signing
from app.store import apikeys, tracking
from app.store import requests as store
from app.store.keys import key_for_queue
from tests.conftest import SAMPLE
from tests.fal_standin import KEY
from tests.sinks import Sink

PROXY = "/api/fal/proxy"
SUBMIT = "https://queue.fal.run/fal-ai/dwpose"
DATA_URI = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()


def call(live, target: str | None, key: str | None, method: str = "POST", **kwargs):
    headers = {**({"x-fal-target-url": target} if target else {}),
               **({"Authorization": f"Key {key}"} if key else {}), **kwargs.pop("headers", {})}
    return httpx.request(method, live.url + PROXY, headers=headers, **kwargs)


def test_no_key_is_401_in_fals_shape(live):
    answer = call(live, SUBMIT, None, json={"image_url": DATA_URI})
    assert answer.status_code == 401 and "detail" in answer.json()


def test_a_proxy_token_stands_for_its_key_on_the_proxy_only(live, http, services, app):
    from tests.contract import check

    made = http.post("/v1/proxy-tokens", json={"ttl_seconds": 120})
    assert made.status_code == 201
    check(made, "POST", "/v1/proxy-tokens")
    token = made.json()["token"]
    assert token.startswith("pht_") and made.json()["expires_at"] > time.time() + 100
    submitted = call(live, SUBMIT, token, json={"image_url": DATA_URI})
    assert submitted.status_code == 200, submitted.text
    status = call(live, f"{SUBMIT}/requests/{submitted.json()['request_id']}/status", token,
                  method="GET")
    assert status.status_code == 200
    # Not an API key: the native API refuses it.
    native = httpx.get(f"{live.url}/v1/requests", headers={"Authorization": f"Key {token}"})
    assert native.status_code == 401
    # Forged, tampered, expired or of a revoked key: refused in fal's shape.
    key_id, expires, mac = token[4:].split(".")
    for bad in (f"pht_{key_id}.{int(expires) + 1}.{mac}", f"pht_{key_id}.{expires}.{'0' * 32}",
                f"pht_key_other.{expires}.{mac}", "pht_", f"pht_{key_id}.{expires}"):
        answer = call(live, SUBMIT, bad, json={"image_url": DATA_URI})
        assert answer.status_code == 401 and "detail" in answer.json(), bad
    import app.api as auth

    with app.app_context():
        old = auth.proxy_token(key_id, int(time.time()) - 1)
    assert "expired" in call(live, SUBMIT, old, json={"image_url": DATA_URI}).json()["detail"]
    apikeys.revoke(services.redis, key_id)
    assert call(live, SUBMIT, token, json={"image_url": DATA_URI}).status_code == 401


@pytest.mark.parametrize("body", [{"ttl_seconds": 5}, {"ttl_seconds": 99999},
                                  {"ttl_seconds": "60"}, {"ttl_seconds": True},
                                  {"ttl_seconds": 60.5}, [1], None,
                                  {"ttl_seconds": 60, "scope": "all"}])
def test_proxy_token_lifetimes_out_of_range_or_unknown_fields_are_422(http, body):
    answer = http.post("/v1/proxy-tokens", content=json.dumps(body),
                       headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert ("scope" if body and "scope" in body else "ttl_seconds") in answer.json()["message"]


def test_a_proxy_token_lifetime_may_be_a_whole_float(http):
    made = http.post("/v1/proxy-tokens", json={"ttl_seconds": 326.0})
    assert made.status_code == 201, made.text
    assert made.json()["expires_at"] - time.time() == pytest.approx(326, abs=5)


def test_missing_target_is_400(live, api_key):
    assert call(live, None, api_key, json={}).status_code == 400


@pytest.mark.parametrize("target", ["https://evil.example.com/fal-ai/dwpose",
                                    "http://queue.fal.run/fal-ai/dwpose",
                                    "https://queue.fal.run.evil.com/x",
                                    "https://notfal.run/x", "https://169.254.169.254/latest"])
def test_targets_off_fals_hosts_are_refused(live, api_key, target):
    answer = call(live, target, api_key, json={})
    assert answer.status_code == 412 and "x-fal-target-url" in answer.json()["detail"]


def test_other_fal_apps_are_a_clear_404(live, api_key):
    answer = call(live, "https://queue.fal.run/fal-ai/flux/dev", api_key, json={})
    assert answer.status_code == 404 and "fal-ai/dwpose" in answer.json()["detail"]


def test_bad_input_is_a_fal_validation_error(live, api_key):
    answer = call(live, SUBMIT, api_key, json={"image_url": "http://10.1.2.3/x.jpg"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "image_url"]
    missing = call(live, SUBMIT, api_key, json={})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == [
        "body", "image_url"]


def test_local_submit_status_and_unknown_request(live, api_key):
    submitted = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}).json()
    assert submitted["status"] == "IN_QUEUE" and submitted["queue_position"] == 0
    status = call(live, f"{SUBMIT}/requests/{submitted['request_id']}/status?logs=1", api_key,
                  method="GET").json()
    assert status["status"] == "IN_QUEUE" and status["logs"][0]["message"]
    result = call(live, f"{SUBMIT}/requests/{submitted['request_id']}", api_key, method="GET")
    assert result.status_code == 400
    unknown = call(live, f"{SUBMIT}/requests/nope/status", api_key, method="GET")
    assert unknown.status_code == 404


def test_local_cancel_of_a_queued_request_answers_as_fal(live, api_key):
    submitted = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}).json()
    base = f"{SUBMIT}/requests/{submitted['request_id']}"  # no worker runs: it stays queued
    cancelled = call(live, base + "/cancel", api_key, method="PUT")
    assert cancelled.status_code == 202
    assert cancelled.json() == {"status": "CANCELLATION_REQUESTED"}
    status = call(live, base + "/status", api_key, method="GET")
    assert status.json()["status"] == "COMPLETED"  # fal's three statuses: cancelled shows so
    result = call(live, base, api_key, method="GET")
    assert result.status_code == 400 and result.json() == {"detail": "Request was cancelled"}
    again = call(live, base + "/cancel", api_key, method="PUT")
    assert again.status_code == 400 and again.json() == {"status": "ALREADY_COMPLETED"}


@pytest.fixture
def overrides(request, overrides):
    """Forward mode for tests that ask for it (they use the ``fal`` fixture)."""
    if "fal" not in request.fixturenames:
        return overrides
    fal = request.getfixturevalue("fal")
    return {**overrides, "provider": "fal", "fal_key": KEY, "fal_queue_url": fal.url,
            "fal_forward_base_url": fal.url, "fal_jwks_url": fal.url + "/.well-known/jwks.json"}


def test_forward_mode_swaps_the_key_and_strips_cookies(fal, live, api_key, services, run_jobs):
    sink = Sink().start()
    try:
        target = f"{SUBMIT}?fal_webhook={sink.url}"
        answer = call(live, target, api_key, json={"image_url": "https://example.com/a.jpg"},
                      headers={"Cookie": "session=secret"})
        assert answer.status_code == 200, answer.text
        sent = fal.seen[-1]
        assert sent["Authorization"] == f"Key {KEY}"
        assert "Cookie" not in sent and api_key not in str(sent)
        job = fal.jobs[answer.json()["request_id"]]
        assert "/webhooks/fal?posehook_request=" in job.webhook  # fal calls posehook back
        request_id = store.find_by_provider_ref(services.redis, "fal", job.id)
        deadline = time.time() + 10
        while store.get(services.redis, request_id).status is not Status.COMPLETED:
            assert time.time() < deadline
            run_jobs()
            time.sleep(0.1)
        run_jobs()
        deadline = time.time() + 10
        while not sink.received:  # and the caller's own fal_webhook gets fal's format
            assert time.time() < deadline
            run_jobs()
            time.sleep(0.1)
        hook = sink.received[0]
        body = json.loads(hook.body)
        # The caller only ever saw fal's id: the callback names that one, signed as fal signs.
        assert body["status"] == "OK" and body["request_id"] == job.id
        assert body["gateway_request_id"] == job.id
        assert fal_signing.verify(hook.body, hook.headers, [services.signing_key.public_key()],
                                  tolerance=300) == job.id
        status = call(live, f"{SUBMIT}/requests/{job.id}/status", api_key, method="GET")
        assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
    finally:
        sink.stop()


def forwarded_submit(live, key: str) -> str:
    """Submit through the proxy in forward mode; return fal's request id."""
    answer = call(live, SUBMIT, key, json={"image_url": "https://example.com/a.jpg"})
    assert answer.status_code == 200, answer.text
    return answer.json()["request_id"]


@pytest.mark.parametrize("method,target", [
    ("POST", "https://queue.fal.run/fal-ai/flux/dev"),
    ("POST", "https://fal.run/fal-ai/flux/dev"),
    ("POST", "https://queue.fal.run/fal-ai/dwpose/extra"),
    ("GET", "https://queue.fal.run/fal-ai/flux/requests/abc/status"),
    ("GET", "https://queue.fal.run/fal-ai/dwpose/requests/abc/logs"),
    ("GET", "https://rest.fal.ai/users/me"),
    ("POST", "https://rest.fal.ai/storage/upload/initiate-multipart"),
    ("GET", "https://fal.media/files/x.png"),
])
def test_forward_mode_passes_on_nothing_but_our_app(fal, live, api_key, services, method,
                                                     target):
    answer = call(live, target, api_key, method=method, json={})
    assert answer.status_code == 404 and "fal-ai/dwpose" in answer.json()["detail"]
    assert fal.calls == []  # the operator's key was not used
    assert services.redis.zcard(key_for_queue()) == 0  # and nothing was recorded


def test_forward_mode_serves_a_request_only_to_the_key_that_submitted_it(
        fal, live, api_key, services):
    fal.callback = "drop"
    fal_id = forwarded_submit(live, api_key)
    other = apikeys.create(services.redis, "other")[1]
    sent = len(fal.calls)
    base = f"{SUBMIT}/requests/{fal_id}"
    for method, target in (("GET", base + "/status"), ("GET", base + "/status/stream"),
                           ("GET", base), ("PUT", base + "/cancel")):
        answer = call(live, target, other, method=method)
        assert answer.status_code == 404 and answer.json() == {"detail": "Request not found"}
    unknown = call(live, f"{SUBMIT}/requests/{uuid.uuid4()}/status", api_key, method="GET")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Request not found"}
    assert len(fal.calls) == sent and not fal.jobs[fal_id].cancelled
    mine = call(live, base + "/status", api_key, method="GET")
    assert mine.status_code == 200 and mine.json()["request_id"] == fal_id


def test_forward_mode_a_cancel_fal_takes_cancels_our_record_too(fal, live, api_key, services,
                                                                 run_jobs):
    fal.callback, fal.delay = "drop", 30  # still running at fal when the cancel comes
    fal_id = forwarded_submit(live, api_key)
    answer = call(live, f"{SUBMIT}/requests/{fal_id}/cancel", api_key, method="PUT")
    assert answer.status_code == 202 and fal.jobs[fal_id].cancelled
    request_id = store.find_by_provider_ref(services.redis, "fal", fal_id)
    assert store.get(services.redis, request_id).status is Status.CANCELLED
    run_jobs()  # the announcement
    assert tracking.events_owed(services.redis, time.time() + 1) == []


def test_forward_mode_passes_the_storage_upload_initiate_on(fal, live, api_key):
    answer = call(live, "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
                  api_key, json={"content_type": "image/png", "file_name": "a.png"})
    assert answer.status_code == 200 and answer.json()["file_url"] == f"{fal.url}/files/a.png"
    assert fal.calls == [("POST", "/storage/upload/initiate")]
    assert fal.seen[-1]["Authorization"] == f"Key {KEY}"


def test_forward_mode_answers_are_readable_when_fal_compresses_them(fal, live, api_key):
    fal.callback, fal.gzip = "drop", True
    gzip_ok = {"Accept-Encoding": "gzip"}
    submitted = call(live, SUBMIT, api_key, json={"image_url": "https://example.com/a.jpg"},
                     headers=gzip_ok)
    assert "gzip" in fal.seen[-1]["Accept-Encoding"]  # fal was free to compress
    assert submitted.status_code == 200 and submitted.json()["request_id"] in fal.jobs
    fal_id = submitted.json()["request_id"]
    status = call(live, f"{SUBMIT}/requests/{fal_id}/status", api_key, method="GET",
                  headers=gzip_ok)
    assert status.status_code == 200 and status.json()["request_id"] == fal_id


def test_forward_mode_a_submit_fal_refuses_is_failed_and_announced(fal, live, http, api_key,
                                                                   run_jobs):
    sink = Sink().start()
    try:
        assert http.post("/v1/subscriptions", json={"url": sink.url, "events": ["request.*"]}
                         ).status_code == 201
        fal.refuse = [500]
        answer = call(live, SUBMIT, api_key, json={"image_url": "https://example.com/a.jpg"})
        assert answer.status_code == 500  # fal's own answer, passed on
        run_jobs()
        events = [json.loads(got.body) for got in sink.received]
        events.sort(key=lambda e: e["data"]["sequence"])
        assert [(e["type"], e["data"]["sequence"]) for e in events] == [
            ("request.queued", 1), ("request.failed", 2)]
        assert events[1]["data"]["status"] == "FAILED"
        assert "fal refused" in events[1]["data"]["error"]["message"]
    finally:
        sink.stop()


def test_forward_mode_a_submit_fal_may_have_taken_waits_for_its_callback(fal, live, api_key,
                                                                         services):
    fal.refuse = [504]  # fal's gateway gave up: fal may be running it all the same
    answer = call(live, SUBMIT, api_key, json={"image_url": "https://example.com/a.jpg"})
    assert answer.status_code == 504
    [record] = store.list_for_key(services.redis, apikeys.authenticate(
        services.redis, api_key).id)[0]
    assert record.status is Status.IN_QUEUE  # reconciliation fails it if no callback comes
    logs = [line["message"] for line in store.logs(services.redis, record.id)]
    assert "fal's gateway answered 504; waiting for fal's callback" in logs


def test_forward_mode_fal_unreachable_is_a_fal_style_502_and_fails_the_submit(
        fal, live, api_key, services):
    fal.stop()  # connecting is refused: the submit never reached fal
    answer = call(live, SUBMIT, api_key, json={"image_url": "https://example.com/a.jpg"})
    assert answer.status_code == 502
    assert answer.json() == {"detail": "fal is unreachable (ConnectError)"}
    [record] = store.list_for_key(services.redis, apikeys.authenticate(
        services.redis, api_key).id)[0]
    assert record.status is Status.FAILED
    assert record.error["message"] == "fal is unreachable (ConnectError)"


@pytest.mark.parametrize("asked,listed", [("1", True), ("true", True), ("TRUE", True),
                                          ("0", False), ("false", False), (None, False)])
def test_status_logs_as_either_client_asks_and_the_key_is_always_there(live, api_key, asked,
                                                                       listed):
    submitted = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}).json()
    query = "" if asked is None else f"?logs={asked}"
    status = call(live, f"{SUBMIT}/requests/{submitted['request_id']}/status{query}", api_key,
                  method="GET")
    assert status.status_code == 200
    body = status.json()
    assert "logs" in body  # fal's Python client reads data["logs"] whether it asked or not
    if listed:
        assert [line["message"] for line in body["logs"]] == ["request received"]
    else:
        assert body["logs"] is None


def test_status_logs_other_than_fals_values_are_a_422_with_the_error_type(live, api_key):
    submitted = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}).json()
    answer = call(live, f"{SUBMIT}/requests/{submitted['request_id']}/status?logs=maybe",
                  api_key, method="GET")
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "logs"]
    assert answer.headers["X-Fal-Error-Type"] == "validation_error"


def test_every_fal_surface_error_says_its_type(live, api_key):
    cases = [(call(live, SUBMIT, None, json={"image_url": DATA_URI}), 401, "unauthorized"),
             (call(live, None, api_key, json={}), 400, "bad_request"),
             (call(live, SUBMIT, api_key, json={}), 422, "validation_error"),
             (call(live, f"{SUBMIT}/requests/nope/status", api_key, method="GET"), 404,
              "not_found")]
    for answer, code, kind in cases:
        assert (answer.status_code, answer.headers.get("X-Fal-Error-Type")) == (code, kind)


def sse_events(lines) -> list[dict]:
    """Read SSE ``data:`` events from an iterator of lines until it ends."""
    return [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]


def test_the_status_stream_sends_each_log_line_once(live, api_key, services, run_jobs):
    submitted = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}).json()
    target = f"{SUBMIT}/requests/{submitted['request_id']}/status/stream?logs=1"
    headers = {"x-fal-target-url": target, "Authorization": f"Key {api_key}"}
    with httpx.stream("GET", live.url + PROXY, headers=headers, timeout=60) as stream:
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        run_jobs()  # the request runs to its end while the stream is open
        events = [json.loads(first[len("data: "):]), *sse_events(lines)]
    assert events[0]["status"] == "IN_QUEUE" and events[-1]["status"] == "COMPLETED"
    assert len(events) >= 2
    streamed = [line["message"] for event in events for line in event["logs"]]
    stored = [line["message"] for line in store.logs(services.redis, submitted["request_id"])]
    # What the client adds up: each line once, in order. The move to COMPLETED is made just
    # before its own log line is written, so the last event may close before that line.
    assert streamed == stored[:len(streamed)] and len(streamed) >= len(stored) - 1
    assert any(line.startswith("pose image stored") for line in streamed)
