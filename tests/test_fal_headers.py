"""fal's request headers: x-fal-request-timeout, x-fal-no-retry, x-fal-queue-priority."""

from __future__ import annotations

import time

import pytest

from app import lifecycle
from app.models import Status
from app.store import requests as store
from jobs import sweep
from tests.test_api_fal import DATA_URI, SUBMIT, call


def submitted(live, api_key, services, **headers):
    answer = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}, headers=headers)
    assert answer.status_code == 200, answer.text
    return store.get(services.redis, answer.json()["request_id"])


def until_passed(moment: float) -> None:
    """Wait until the clock is past ``moment`` (what the test is about is what comes after)."""
    while time.time() <= moment:
        time.sleep(0.05)


def test_a_request_not_started_within_its_timeout_fails_with_a_user_timeout(
        live, api_key, services, run_jobs):
    record = submitted(live, api_key, services, **{"x-fal-request-timeout": "1.5"})
    assert record.start_deadline == pytest.approx(record.created_at + 1.5, abs=1)
    until_passed(record.start_deadline)
    run_jobs()  # its inference job finds the time passed: it never runs the engine
    done = store.get(services.redis, record.id)
    assert done.status is Status.FAILED and done.error["type"] == "request_timeout"
    assert done.started_at is None and "x-fal-request-timeout" in done.error["message"]
    base = f"{SUBMIT}/requests/{record.id}"
    assert call(live, base + "/status", api_key, method="GET").json()["status"] == "COMPLETED"
    result = call(live, base, api_key, method="GET")
    assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"
    assert result.headers["X-Fal-Error-Type"] == "request_timeout"


def test_a_status_call_ends_a_queued_request_whose_timeout_passed(live, api_key, services):
    record = submitted(live, api_key, services, **{"x-fal-request-timeout": "1.1"})
    until_passed(record.start_deadline)  # no worker runs at all
    status = call(live, f"{SUBMIT}/requests/{record.id}/status", api_key, method="GET")
    assert status.json()["status"] == "COMPLETED"
    assert store.get(services.redis, record.id).error["type"] == "request_timeout"


def test_a_sync_run_past_its_timeout_answers_504_user_and_fails_the_request(live, api_key,
                                                                            services):
    answer = call(live, "https://fal.run/fal-ai/dwpose", api_key, json={"image_url": DATA_URI},
                  headers={"x-fal-request-timeout": "1.2"}, timeout=30)  # no worker runs
    assert answer.status_code == 504 and answer.headers["x-fal-request-timeout-type"] == "user"
    assert answer.headers["X-Fal-Error-Type"] == "request_timeout"
    [record] = store.list_for_key(services.redis, _key_id(services, api_key))[0]
    assert record.status is Status.FAILED and record.error["type"] == "request_timeout"


def _key_id(services, api_key: str) -> str:
    from app.store import apikeys

    return apikeys.authenticate(services.redis, api_key).id


@pytest.mark.parametrize("name,value", [("x-fal-request-timeout", "soon"),
                                        ("x-fal-request-timeout", "-1"),
                                        ("x-fal-request-timeout", "inf"),
                                        ("x-fal-queue-priority", "urgent")])
def test_header_values_fal_does_not_take_are_a_422_naming_the_header(live, api_key, name,
                                                                     value):
    answer = call(live, SUBMIT, api_key, json={"image_url": DATA_URI}, headers={name: value})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["header", name]
    assert answer.headers["X-Fal-Error-Type"] == "validation_error"


@pytest.mark.parametrize("value,retried", [("1", False), ("true", False), ("yes", False),
                                           ("0", True), (None, True)])
def test_no_retry_fails_a_request_whose_worker_was_lost_instead_of_running_it_again(
        live, api_key, services, run_jobs, value, retried):
    headers = {"x-fal-no-retry": value} if value is not None else {}
    record = submitted(live, api_key, services, **headers)
    # A worker took it and died: the move it made, with a lease that has run out.
    assert lifecycle.start(services, record, lease_until=time.time() - 1, fields={"attempts": 1},
                           note="inference started (attempt 1)")
    assert sweep.recover_lost_workers(services, time.time()) == 1
    after = store.get(services.redis, record.id)
    if retried:
        assert after.status is Status.IN_QUEUE
    else:
        assert after.status is Status.FAILED and after.error["type"] == "worker_lost"
        assert "x-fal-no-retry" in after.error["message"]


def test_a_low_priority_request_never_runs_before_a_normal_one(live, api_key, services,
                                                               run_jobs):
    low = submitted(live, api_key, services, **{"x-fal-queue-priority": "low"})
    normal = submitted(live, api_key, services, **{"x-fal-queue-priority": "normal"})
    assert (low.priority, normal.priority) == ("low", "normal")
    run_jobs()  # one worker, both queues: it takes the normal queue first
    low, normal = (store.get(services.redis, r.id) for r in (low, normal))
    assert low.status is Status.COMPLETED and normal.status is Status.COMPLETED
    assert normal.started_at < low.started_at


def test_an_open_status_stream_ends_when_the_timeout_passes(live, api_key, services):
    import json

    import httpx

    record = submitted(live, api_key, services, **{"x-fal-request-timeout": "1.1"})
    target = f"{SUBMIT}/requests/{record.id}/status/stream"
    headers = {"x-fal-target-url": target, "Authorization": f"Key {api_key}"}
    with httpx.stream("GET", live.url + "/api/fal/proxy", headers=headers, timeout=60) as got:
        events = [json.loads(line[6:]) for line in got.iter_lines() if line.startswith("data: ")]
    assert [e["status"] for e in events] == ["IN_QUEUE", "COMPLETED"]  # no worker ever ran
    assert store.get(services.redis, record.id).error["type"] == "request_timeout"
