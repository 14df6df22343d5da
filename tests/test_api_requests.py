"""The native requests API: keys, validation, idempotency, status, listing, cancel."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from app.models import Status
from app.store import apikeys
from app.store import requests as store
from tests.contract import check


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """Return ``data`` as a base64 data URI."""
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.fixture
def body(sample_bytes) -> dict:
    """A valid request body (the sample photo as a data URI)."""
    return {"input": {"image_url": data_uri(sample_bytes)}}


@pytest.mark.parametrize("header", [None, "Key wrong", "Bearer wrong", "Basic abc", "Key"])
def test_missing_or_wrong_key_is_401_with_a_json_body(live, body, header):
    headers = {"Authorization": header} if header else {}
    answer = httpx.post(f"{live.url}/v1/requests", json=body, headers=headers)
    assert answer.status_code == 401
    check(answer, "POST", "/v1/requests")
    assert "key" in answer.json()["message"].lower()


def test_revoked_key_is_401(live, services, body):
    record, key = apikeys.create(services.redis, "soon gone")
    apikeys.revoke(services.redis, record.id)
    answer = httpx.post(f"{live.url}/v1/requests", json=body,
                        headers={"Authorization": f"Key {key}"})
    assert answer.status_code == 401


def test_keys_are_stored_hashed(services, api_key):
    assert not any(api_key in value for key in services.redis.scan_iter("posehook:api-key*")
                   if services.redis.type(key) == "hash"
                   for value in services.redis.hgetall(key).values())


def test_bearer_form_is_accepted(live, api_key, body):
    answer = httpx.post(f"{live.url}/v1/requests", json=body,
                        headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 202


def test_submit_answers_202_with_the_request_urls(http, body):
    answer = http.post("/v1/requests", json=body)
    assert answer.status_code == 202
    check(answer, "POST", "/v1/requests")
    got = answer.json()
    assert got["status"] == "IN_QUEUE" and got["queue_position"] == 0
    assert got["status_url"].endswith(f"/v1/requests/{got['request_id']}/status")
    assert http.get(got["status_url"]).status_code == 200


@pytest.mark.parametrize("payload, field", [
    ({}, "input"),
    ({"input": {}}, "image_url"),
    ({"input": {"image_url": "ftp://example.com/a.jpg"}}, "image_url"),
    ({"input": {"image_url": "data:image/png;base64,!!!"}}, "image_url"),
    ({"input": {"image_url": "data:image/png;base64," + base64.b64encode(b"hello").decode()}},
     "image_url"),
    ({"input": {"image_url": "http://127.0.0.1/x.jpg", "detect_resolution": 99999}},
     "detect_resolution"),
    ({"input": {"image_url": "http://127.0.0.1/x.jpg", "output_format": "tiff"}},
     "output_format"),
    ({"input": {"image_url": "http://127.0.0.1/x.jpg", "surprise": 1}}, "surprise"),
    ({"input": {"image_url": "http://127.0.0.1/x.jpg"}, "webhook_url": "not a url"},
     "webhook_url"),
])
def test_bad_input_is_422_naming_the_field(http, payload, field):
    answer = http.post("/v1/requests", json=payload)
    assert answer.status_code == 422, answer.text
    check(answer, "POST", "/v1/requests")
    assert field in answer.text


def test_a_body_sent_as_text_is_415(http):
    answer = http.post("/v1/requests", content=b"nope", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415
    assert answer.json()["code"] == "wrong_content_type"


def test_private_address_is_refused_unless_allowed(live, redis_url, tmp_path, redis, body):
    from app import create_app
    from tests.conftest import LiveServer
    from tests.redis_server import free_port

    strict_port = free_port()
    strict = create_app({"redis_url": redis_url, "data_dir": str(tmp_path / "strict"),
                         "public_base_url": f"http://127.0.0.1:{strict_port}"})
    key = apikeys.create(strict.extensions["posehook"].redis, "strict")[1]
    server = LiveServer(strict, strict_port)
    try:
        for url in ("http://127.0.0.1:8000/a.jpg", "http://localhost/a.jpg",
                    "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/a.jpg",
                    "http://[::1]/a.jpg"):
            answer = httpx.post(f"{server.url}/v1/requests", json={"input": {"image_url": url}},
                                headers={"Authorization": f"Key {key}"})
            assert answer.status_code == 422, url
            assert "image_url" in answer.text
    finally:
        server.stop()


def test_too_big_data_uri_is_413(live, redis_url, tmp_path, redis):
    from app import create_app
    from tests.conftest import LiveServer
    from tests.redis_server import free_port

    small_port = free_port()
    small = create_app({"redis_url": redis_url, "data_dir": str(tmp_path / "small"),
                        "public_base_url": f"http://127.0.0.1:{small_port}",
                        "max_upload_bytes": 1000})
    key = apikeys.create(small.extensions["posehook"].redis, "small")[1]
    server = LiveServer(small, small_port)
    try:
        uri = data_uri(b"\xff" * 5000)
        answer = httpx.post(f"{server.url}/v1/requests", json={"input": {"image_url": uri}},
                            headers={"Authorization": f"Key {key}"})
        assert answer.status_code == 413
    finally:
        server.stop()


def test_same_idempotency_key_and_body_returns_the_same_request(http, body):
    first = http.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-1"})
    again = http.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["request_id"] == again.json()["request_id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_same_idempotency_key_with_another_body_is_409(http, body, sample_bytes):
    http.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-2"})
    other = {"input": {"image_url": data_uri(sample_bytes), "include_face": False}}
    answer = http.post("/v1/requests", json=other, headers={"Idempotency-Key": "k-2"})
    assert answer.status_code == 409
    check(answer, "POST", "/v1/requests")


def stored_inputs(services) -> list[str]:
    """The keys of every stored file, checked against the janitor's index of them."""
    from app.store import files

    stored = sorted(key for key, _ in services.storage.list_files())
    assert files.usage(services.redis, time.time())["files"] == len(stored)
    return stored


def test_a_replay_or_a_conflict_stores_no_copy_of_its_data_uri(http, services, body,
                                                              sample_bytes):
    from app.store import files

    answers = [http.post("/v1/requests", json=body, headers={"Idempotency-Key": "k-3"})
               for _ in range(4)]
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["request_id"] for a in answers}) == 1
    other = {"input": {"image_url": data_uri(sample_bytes), "include_face": False}}
    assert http.post("/v1/requests", json=other,
                     headers={"Idempotency-Key": "k-3"}).status_code == 409
    [kept] = stored_inputs(services)  # the first request's copy only
    request = store.get(services.redis, answers[0].json()["request_id"])
    assert request.input["image_url"].endswith(kept)
    assert files.facts(services.redis, kept)["owner"] == f"request:{request.id}"


def test_another_keys_request_is_404(live, services, http, body):
    request_id = http.post("/v1/requests", json=body).json()["request_id"]
    stranger = apikeys.create(services.redis, "stranger")[1]
    answer = httpx.get(f"{live.url}/v1/requests/{request_id}",
                       headers={"Authorization": f"Key {stranger}"})
    assert answer.status_code == 404
    check(answer, "GET", "/v1/requests/{request_id}")


def test_status_reports_queue_position_and_logs(http, body):
    ids = [http.post("/v1/requests", json=body).json()["request_id"] for _ in range(3)]
    answer = http.get(f"/v1/requests/{ids[2]}/status", params={"logs": "1"})
    check(answer, "GET", "/v1/requests/{request_id}/status")
    assert answer.json()["queue_position"] == 2
    assert answer.json()["logs"][0]["message"] == "request received"
    assert "timestamp" in answer.json()["logs"][0]


def test_cancel_while_queued_is_202_and_the_job_never_runs(http, services, body, run_jobs):
    request_id = http.post("/v1/requests", json=body).json()["request_id"]
    answer = http.put(f"/v1/requests/{request_id}/cancel")
    assert answer.status_code == 202
    check(answer, "PUT", "/v1/requests/{request_id}/cancel")
    run_jobs()
    record = store.get(services.redis, request_id)
    assert record.status is Status.CANCELLED and record.output is None
    assert record.started_at is None


def test_cancel_after_finish_is_400(http, services, body):
    request_id = http.post("/v1/requests", json=body).json()["request_id"]
    store.transition(services.redis, request_id, Status.FAILED, (Status.IN_QUEUE,),
                     {"error": {"type": "x", "message": "y"}})
    answer = http.put(f"/v1/requests/{request_id}/cancel")
    assert answer.status_code == 400
    check(answer, "PUT", "/v1/requests/{request_id}/cancel")
    assert "FAILED" in answer.json()["message"]


def test_list_is_newest_first_with_cursor_pagination_and_status_filter(http, services, body):
    ids = []
    for _ in range(5):
        ids.append(http.post("/v1/requests", json=body).json()["request_id"])
        time.sleep(0.002)
    http.put(f"/v1/requests/{ids[1]}/cancel")
    page = http.get("/v1/requests", params={"limit": 2})
    check(page, "GET", "/v1/requests")
    assert [r["request_id"] for r in page.json()["requests"]] == ids[::-1][:2]
    seen = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        got = http.get("/v1/requests", params=params).json()
        seen += [r["request_id"] for r in got["requests"]]
        cursor = got["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]
    assert http.get("/v1/requests", params={"cursor": "12"}).status_code == 422
    cancelled = http.get("/v1/requests", params={"status": "CANCELLED"}).json()["requests"]
    assert [r["request_id"] for r in cancelled] == [ids[1]]
    assert http.get("/v1/requests", params={"limit": 0}).status_code == 422


def test_requests_made_in_the_same_millisecond_are_each_listed_once(http, services, body,
                                                                    api_key):
    from app.store.keys import key_for_requests_of

    ids = {http.post("/v1/requests", json=body).json()["request_id"] for _ in range(5)}
    index = key_for_requests_of(apikeys.authenticate(services.redis, api_key).id)
    services.redis.zadd(index, {request_id: 1_700_000_000_000 for request_id in ids})
    seen, cursor = [], None
    while True:
        got = http.get("/v1/requests", params={"limit": 2, **({"cursor": cursor} if cursor
                                                              else {})}).json()
        seen += [r["request_id"] for r in got["requests"]]
        if not (cursor := got["next_cursor"]):
            break
    assert sorted(seen) == sorted(ids)


def test_one_idempotency_key_sent_at_once_many_times_makes_one_request(live, api_key, body,
                                                                       services):
    from concurrent.futures import ThreadPoolExecutor

    def send(_):
        return httpx.post(f"{live.url}/v1/requests", json=body, timeout=30,
                          headers={"Authorization": f"Key {api_key}", "Idempotency-Key": "race"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    assert {a.status_code for a in answers} <= {200, 202}
    assert len({a.json()["request_id"] for a in answers}) == 1
    # Those that lost the race to create dropped the copy of the photo they had stored.
    assert len(stored_inputs(services)) == 1


def test_unknown_request_is_404(http):
    assert http.get("/v1/requests/nope/status").status_code == 404
    # Ids that reach the handler but are not ours, nor ids at all.
    for odd in ("a" * 200, "..", "x%00y", "%E2%80%AE"):
        answer = http.get(f"/v1/requests/{odd}")
        assert answer.status_code == 404 and answer.json()["code"] == "not_found", odd


@pytest.mark.parametrize("prefer", ["wait=61", "wait=" + "9" * 5000])
def test_prefer_wait_over_sixty_is_422(http, body, prefer):
    answer = http.post("/v1/requests", json=body, headers={"Prefer": prefer})
    assert answer.status_code == 422 and "Prefer" in answer.json()["message"]


@pytest.mark.parametrize("field,value", [
    ("detect_resolution", 512.5), ("detect_resolution", "512"), ("detect_resolution", None),
    ("include_body", "yes"), ("include_face", 1), ("output_format", None),
    ("return_keypoints", None)])
def test_options_take_json_types_only_never_a_string_a_fraction_or_null(http, body, field,
                                                                        value):
    answer = http.post("/v1/requests", json={"input": {**body["input"], field: value}})
    assert answer.status_code == 422 and field in answer.json()["errors"]["input"], answer.text


def test_a_whole_number_written_as_a_float_is_an_integer(http, body):
    answer = http.post("/v1/requests", json={"input": {**body["input"],
                                                       "detect_resolution": 256.0}})
    assert answer.status_code == 202, answer.text
    record = http.get(f"/v1/requests/{answer.json()['request_id']}").json()
    assert record["input"]["detect_resolution"] == 256


@pytest.mark.parametrize("field", ["webhook_url", "webhook_events"])
def test_null_webhook_fields_are_422(http, body, field):
    answer = http.post("/v1/requests", json={**body, field: None})
    assert answer.status_code == 422 and field in answer.json()["errors"]


def test_an_idempotency_key_outside_printable_ascii_is_422(http, body):
    answer = http.post("/v1/requests", json=body, headers={"Idempotency-Key": b"caf\xe9"})
    assert answer.status_code == 422 and "Idempotency-Key" in answer.json()["message"]


def test_an_empty_cursor_is_the_first_page(http, body):
    request_id = http.post("/v1/requests", json=body).json()["request_id"]
    answer = http.get("/v1/requests", params={"cursor": ""})
    assert answer.status_code == 200
    assert [r["request_id"] for r in answer.json()["requests"]] == [request_id]


@pytest.mark.parametrize("logs", ["AAA", "", "yes"])
def test_status_logs_other_than_1_0_true_false_is_422(http, body, logs):
    request_id = http.post("/v1/requests", json=body).json()["request_id"]
    answer = http.get(f"/v1/requests/{request_id}/status", params={"logs": logs})
    assert answer.status_code == 422 and answer.json()["errors"] == {
        "logs": ["logs must be 1, 0, true or false"]}
    check(answer, "GET", "/v1/requests/{request_id}/status")


@pytest.mark.parametrize("cursor", ["\u0663", "123\n", "123-", "-ab", "1-ZZ"])
def test_malformed_cursors_are_422_not_500(http, cursor):
    answer = http.get("/v1/requests", params={"cursor": cursor})
    assert answer.status_code == 422 and answer.json()["errors"]


def test_files_are_served_with_a_relative_data_dir(overrides, redis, tmp_path, monkeypatch,
                                                   sample_bytes):
    # make run keeps the default POSEHOOK_DATA_DIR=./data: a relative directory.
    from app import create_app

    monkeypatch.chdir(tmp_path)
    client = create_app({**overrides, "data_dir": "./data"}).test_client()
    key = apikeys.create(redis, "test")[1]
    upload = client.post("/v1/files", data=sample_bytes, content_type="image/jpeg",
                         headers={"Authorization": f"Key {key}"})
    assert upload.status_code == 201, upload.json
    served = client.get("/files/" + upload.json["key"])
    assert served.status_code == 200 and served.data == sample_bytes


@pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)
@pytest.mark.parametrize("name", ["a\r\nb.png", "../../etc/passwd", "\u202egpj.exe"])
def test_uploaded_file_names_are_made_safe_to_serve(http, sample_bytes, name):
    upload = http.post("/v1/files", content=sample_bytes, params={"file_name": name},
                       headers={"Content-Type": "image/jpeg"})
    assert upload.status_code == 201, upload.text
    stored = upload.json()["file_name"]
    assert "/" not in stored and "\r" not in stored and "\u202e" not in stored
    served = httpx.get(upload.json()["url"])
    assert served.status_code == 200 and served.content == sample_bytes


def test_webhook_events_are_checked_and_wildcards_match_from_the_first_event(
        http, services, body, run_jobs):
    from tests.sinks import Sink

    refused = http.post("/v1/requests", json={**body, "webhook_events": ["nope"]})
    assert refused.status_code == 422 and "webhook_events" in refused.json()["errors"]
    sink = Sink().start()
    try:
        answer = http.post("/v1/requests", json={**body, "webhook_url": sink.url,
                                                  "webhook_events": ["request.*"]})
        assert answer.status_code == 202
        run_jobs()
        types = sorted(json.loads(got.body)["type"] for got in sink.received)
        assert types == ["request.completed", "request.queued", "request.started"]
    finally:
        sink.stop()


@pytest.mark.parametrize("url", ["http://xn--localhost-/a.jpg", "http://xn--ls8h.la/",
                                 "http://1.1.1.1:99999/a.jpg"])
def test_malformed_hosts_and_ports_are_422(http, url):
    answer = http.post("/v1/requests", json={"input": {"image_url": url}})
    assert answer.status_code == 422, answer.text
    assert "input.image_url" in answer.json()["errors"]
