"""Webhook ingress: verify, persist, settle exactly once; refusals store nothing."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.models import Status
from app.signing import fal
from app.store import callbacks
from app.store import requests as store
from app.store.keys import key_for_callbacks_pending
from tests.contract import check


def _linked_request(services) -> str:
    record, _ = store.create(services.redis, key_id="key_x", input={"image_url": "x"},
                             provider="local")
    store.link_provider_ref(services.redis, "local", record.id, record.id, 3600)
    store.transition(services.redis, record.id, Status.IN_PROGRESS, (Status.IN_QUEUE,))
    return record.id


def _post(live, body: bytes, headers: dict) -> httpx.Response:
    return httpx.post(f"{live.url}/webhooks/fal", content=body,
                      headers={**headers, "Content-Type": "application/json"})


def _body(request_id: str, status: str = "OK") -> bytes:
    payload = {"image": {"url": "http://x/files/y.png", "content_type": "image/png",
                         "file_name": "y.png", "file_size": 1, "width": 1, "height": 1}}
    return json.dumps({"request_id": request_id, "gateway_request_id": request_id,
                       "status": status, "payload": payload}).encode()


def test_signed_callback_is_stored_then_settles_the_request_once(live, services, run_jobs):
    request_id = _linked_request(services)
    body = _body(request_id)
    answer = _post(live, body, fal.sign(services.signing_key, request_id, "u", body))
    assert answer.status_code == 200
    check(answer, "POST", "/webhooks/fal")
    assert answer.json()["duplicate"] is False
    run_jobs()
    record = store.get(services.redis, request_id)
    assert record.status is Status.COMPLETED
    assert record.output["image"]["url"] == "http://x/files/y.png"


def test_duplicate_callback_answers_200_and_changes_nothing(live, services, run_jobs):
    request_id = _linked_request(services)
    body = _body(request_id)
    first = _post(live, body, fal.sign(services.signing_key, request_id, "u", body))
    run_jobs()
    completed_at = store.get(services.redis, request_id).completed_at
    again = _post(live, body, fal.sign(services.signing_key, request_id, "u", body))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["callback_id"] == first.json()["callback_id"]
    run_jobs()
    assert store.get(services.redis, request_id).completed_at == completed_at


def test_late_error_after_completion_changes_nothing(live, services, run_jobs):
    request_id = _linked_request(services)
    ok = _body(request_id)
    _post(live, ok, fal.sign(services.signing_key, request_id, "u", ok))
    run_jobs()
    late = _body(request_id, "ERROR")
    headers = fal.sign(services.signing_key, request_id, "u", late)
    assert _post(live, late, headers).status_code == 200
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.COMPLETED


def test_bad_signature_is_401_and_nothing_is_stored(live, services):
    request_id = _linked_request(services)
    body = _body(request_id)
    stranger = Ed25519PrivateKey.generate()
    # fal's JWKS is unreachable in tests, so only our own key could verify.
    answer = _post(live, body, fal.sign(stranger, request_id, "u", body))
    assert answer.status_code == 401
    check(answer, "POST", "/webhooks/fal")
    # It says which check failed, not merely that keys are missing.
    assert "not ours" in answer.json()["message"], answer.json()
    assert "could not be fetched" in answer.json()["message"]
    assert services.redis.zcard(key_for_callbacks_pending()) == 0
    assert callbacks.get(services.redis, callbacks.callback_id(request_id, body)) is None


def test_replayed_callback_with_an_old_timestamp_is_401(live, services):
    request_id = _linked_request(services)
    body = _body(request_id)
    headers = fal.sign(services.signing_key, request_id, "u", body, now=time.time() - 600)
    answer = _post(live, body, headers)
    assert answer.status_code == 401
    assert "timestamp" in answer.json()["message"]
    assert services.redis.zcard(key_for_callbacks_pending()) == 0


def test_unknown_request_id_is_stored_and_reported_not_crashed_on(live, services, run_jobs):
    body = _body("nobody-knows")
    answer = _post(live, body, fal.sign(services.signing_key, "nobody-knows", "u", body))
    assert answer.status_code == 200
    run_jobs()
    assert callbacks.unmatched(services.redis) == [answer.json()["callback_id"]]


@pytest.mark.parametrize("body", [b"not json", b"[1,2]"])
def test_a_signed_body_that_is_not_a_json_object_is_422(live, services, body):
    answer = _post(live, body, fal.sign(services.signing_key, "r", "u", body))
    assert answer.status_code == 422


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_one_mebibyte_is_413(live, services, chunked):
    body = b'{"x":"' + b"a" * (1024 * 1024) + b'"}'
    headers = fal.sign(services.signing_key, "r", "u", body)
    # Chunked: no Content-Length to refuse early; the body is read no further than the limit.
    content = (body[i:i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    answer = httpx.post(f"{live.url}/webhooks/fal", content=content,
                        headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 413
    assert services.redis.zcard(key_for_callbacks_pending()) == 0


def test_a_callback_is_stored_and_its_settle_job_queued_in_one_round_trip(app, services,
                                                                          redis_url, run_jobs):
    from app.services import Services
    from tests.test_store import CountingRedis

    counted = Services(services.settings, redis=CountingRedis.from_url(redis_url,
                                                                       decode_responses=True),
                       rq=CountingRedis.from_url(redis_url))
    app.extensions["posehook"] = counted
    client = app.test_client()

    def post(request_id: str) -> dict:
        body = _body(request_id)
        answer = client.post("/webhooks/fal", data=body, headers={
            **fal.sign(services.signing_key, request_id, "u", body),
            "Content-Type": "application/json"})
        assert answer.status_code == 200, answer.text
        return answer.json

    post(_linked_request(services))  # the first loads our key and the scripts
    request_id = _linked_request(services)
    for client_ in (counted.redis, counted.rq):
        client_.calls.clear()
    assert post(request_id)["duplicate"] is False
    assert counted.redis.calls + counted.rq.calls == {"EVALSHA": 1}
    counted.redis.calls.clear()
    assert post(request_id)["duplicate"] is True  # fal retries: stored once, queued once
    assert counted.redis.calls + counted.rq.calls == {"EVALSHA": 1}
    assert services.rq.llen("rq:queue:settle") == 2
    app.extensions["posehook"] = services
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.COMPLETED
