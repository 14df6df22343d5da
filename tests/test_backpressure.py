"""Backpressure: a key's submit rate and the queue's bounds answer 429 with Retry-After."""

from __future__ import annotations

import base64

import httpx
import pytest

from app.store import admission, apikeys
from tests.conftest import SAMPLE
from tests.contract import check

PHOTO = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
BODY = {"input": {"image_url": PHOTO}}


@pytest.fixture
def overrides(overrides):
    """No worker runs in these tests: what is accepted stays queued."""
    return {**overrides, "rate_per_key": 0,
            "max_queued_per_key": 0, "max_queued": 0}


def _client(live, services) -> httpx.Client:
    key = apikeys.create(services.redis, "other")[1]
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Key {key}"}, timeout=30)


def test_a_key_over_its_rate_waits_and_others_do_not(app, services, http, live):
    services.settings = services.settings.replace(rate_per_key=0.5, rate_burst=3)
    codes = [http.post("/v1/requests", json=BODY).status_code for _ in range(3)]
    refused = http.post("/v1/requests", json=BODY)
    assert codes == [202, 202, 202] and refused.status_code == 429, refused.text
    check(refused, "POST", "/v1/requests")
    assert refused.json()["code"] == "too_many_requests"
    assert "0.5 requests per second" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 2  # one token comes in 2 s
    with _client(live, services) as other:
        assert other.post("/v1/requests", json=BODY).status_code == 202


def test_a_key_at_its_queue_bound_gets_429_until_one_leaves_the_queue(app, services, http,
                                                                      live):
    services.settings = services.settings.replace(max_queued_per_key=2)
    ids = [http.post("/v1/requests", json=BODY).json()["request_id"] for _ in range(2)]
    refused = http.post("/v1/requests", json=BODY)
    assert refused.status_code == 429 and "2 requests (yours) are queued" in refused.text
    assert refused.headers["Retry-After"] == "300"  # nothing has finished lately
    with _client(live, services) as other:
        assert other.post("/v1/requests", json=BODY).status_code == 202
    assert http.put(f"/v1/requests/{ids[0]}/cancel").status_code == 202
    assert http.post("/v1/requests", json=BODY).status_code == 202


def test_a_replay_is_answered_even_at_the_bounds_and_takes_no_token(app, services, http):
    # A client retrying after a lost answer gets its request back, not a 429.
    services.settings = services.settings.replace(max_queued_per_key=1, rate_per_key=0.01,
                                                  rate_burst=1)
    first = http.post("/v1/requests", json=BODY, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202, first.text
    for _ in range(3):
        again = http.post("/v1/requests", json=BODY, headers={"Idempotency-Key": "order-1"})
        assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["request_id"] == first.json()["request_id"]
    refused = http.post("/v1/requests", json=BODY)  # a new request is still held to them
    assert refused.status_code == 429 and "faster than its limit" in refused.text


def test_the_service_bound_counts_every_key(app, services, http, live):
    services.settings = services.settings.replace(max_queued=2)
    assert http.post("/v1/requests", json=BODY).status_code == 202
    with _client(live, services) as other:
        assert other.post("/v1/requests", json=BODY).status_code == 202
        refused = other.post("/v1/requests", json=BODY)
    assert refused.status_code == 429 and "everyone's" in refused.json()["message"]


def test_retry_after_follows_the_measured_drain_rate(app, services, http):
    import time

    services.settings = services.settings.replace(max_queued=1)
    assert http.post("/v1/requests", json=BODY).status_code == 202
    for _ in range(30):  # 30 requests finished in the last minute: 0.5 per second
        admission.note_drained(services.redis, time.time() - 5)
    assert admission.drain_rate(services.redis) == pytest.approx(0.5)
    refused = http.post("/v1/requests", json=BODY)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"


def test_the_fal_surface_says_it_in_fals_shape(app, services, live, api_key):
    services.settings = services.settings.replace(rate_per_key=0.5, rate_burst=1)
    headers = {"Authorization": f"Key {api_key}",
               "x-fal-target-url": "https://queue.fal.run/fal-ai/dwpose"}
    first = httpx.post(f"{live.url}/api/fal/proxy", headers=headers,
                       json={"image_url": PHOTO})
    second = httpx.post(f"{live.url}/api/fal/proxy", headers=headers,
                        json={"image_url": PHOTO})
    assert first.status_code == 200 and second.status_code == 429
    assert "limit" in second.json()["detail"] and int(second.headers["Retry-After"]) >= 1


def test_the_bucket_refills_at_its_rate(services):
    assert admission.take_token(services.redis, "k", 1.0, 2, now=100.0) == 0
    assert admission.take_token(services.redis, "k", 1.0, 2, now=100.0) == 0
    assert admission.take_token(services.redis, "k", 1.0, 2, now=100.0) == pytest.approx(1.0)
    assert admission.take_token(services.redis, "k", 1.0, 2, now=100.5) == pytest.approx(0.5)
    assert admission.take_token(services.redis, "k", 1.0, 2, now=101.5) == 0
