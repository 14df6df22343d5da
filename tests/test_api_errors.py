"""Errors over real HTTP: JSON bodies that do not parse or are not JSON; routing errors."""

from __future__ import annotations

import pytest

from tests.contract import check, check_error

BROKEN = b'{"input": {"image_url": '
"""A JSON body cut short: the parser says where it stopped."""

PROXY = "/api/fal/proxy"
SUBMIT = "https://queue.fal.run/fal-ai/dwpose"


@pytest.fixture
def subscription_id(http) -> str:
    """A subscription of the test's key (the PATCH and recover routes need one)."""
    made = http.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook",
                                                "events": ["request.*"]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


JSON_ENDPOINTS = [
    ("POST", "/v1/requests", "/v1/requests"),
    ("POST", "/v1/subscriptions", "/v1/subscriptions"),
    ("PATCH", "/v1/subscriptions/{id}", "/v1/subscriptions/{subscription_id}"),
    ("POST", "/v1/subscriptions/{id}/recover", "/v1/subscriptions/{subscription_id}/recover"),
    ("POST", "/v1/proxy-tokens", "/v1/proxy-tokens"),
]


@pytest.mark.parametrize("method, path, documented", JSON_ENDPOINTS)
def test_a_body_that_does_not_parse_is_400_not_json(http, subscription_id, method, path,
                                                     documented):
    answer = http.request(method, path.format(id=subscription_id), content=BROKEN,
                          headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    check(answer, method, documented)
    assert answer.json()["code"] == "not_json"
    assert answer.json()["message"] == ("the body is not valid JSON: Expecting value: "
                                        "line 1 column 25 (char 24)")


@pytest.mark.parametrize("method, path, documented", JSON_ENDPOINTS)
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_json_sent_as_another_type_is_415_wrong_content_type(http, subscription_id, method,
                                                             path, documented, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = http.request(method, path.format(id=subscription_id), content=b'{"ttl_seconds": 60}',
                          headers=headers)
    assert answer.status_code == 415, answer.text
    check(answer, method, documented)
    assert answer.json()["code"] == "wrong_content_type"
    assert answer.json()["message"] == "send the body with Content-Type: application/json"


def test_the_fal_proxy_says_the_same_in_fals_shape(http):
    headers = {"x-fal-target-url": SUBMIT}
    broken = http.post(PROXY, content=BROKEN,
                       headers={**headers, "Content-Type": "application/json"})
    assert broken.status_code == 400
    assert broken.json() == {"detail": "the body is not valid JSON: Expecting value: "
                                       "line 1 column 25 (char 24)"}
    plain = http.post(PROXY, content=b"{}", headers={**headers, "Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert plain.json() == {"detail": "send the body with Content-Type: application/json"}


def test_an_empty_body_still_means_the_defaults_where_the_body_is_optional(http):
    assert http.post("/v1/proxy-tokens").status_code == 201


@pytest.mark.parametrize("path", ["/nope", "/v1/requests/", "/v1/requests/x/status/more",
                                  "/files/"])
def test_an_unknown_path_is_a_json_404(http, path):
    answer = http.get(path)
    assert answer.status_code == 404
    check_error(answer)
    assert answer.json()["code"] == "not_found"


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/v1/requests", {"GET", "HEAD", "OPTIONS", "POST"}),
    ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/v1/requests/x/cancel", {"OPTIONS", "PUT"}),
    ("DELETE", PROXY, {"GET", "OPTIONS", "POST", "PUT", "HEAD"}),
])
def test_a_method_the_path_does_not_take_is_a_json_405_with_allow(http, method, path, allowed):
    answer = http.request(method, path)
    assert answer.status_code == 405
    check_error(answer)
    assert answer.json()["code"] == "method_not_allowed"
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize("path, target", [
    ("/v1/requests//status", "/v1/requests/status"),
    ("/v1//requests", "/v1/requests"),
])
def test_an_empty_path_segment_is_a_json_308_to_the_merged_path(http, live, path, target):
    answer = http.get(path)
    assert answer.status_code == 308
    check_error(answer)
    assert answer.json()["code"] == "permanent_redirect"
    assert answer.headers["Location"] == live.url + target
    assert target in answer.json()["message"]


DEEP = b'{"input": ' + b"[" * 1000 + b"]" * 1000 + b"}"
"""A body nested 1,000 deep: it parses, but nothing of ours nests past a few levels."""


@pytest.mark.parametrize("method, path, documented", JSON_ENDPOINTS)
def test_a_body_nested_too_deep_is_422_naming_the_limit(http, subscription_id, method, path,
                                                        documented):
    answer = http.request(method, path.format(id=subscription_id), content=DEEP,
                          headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    check(answer, method, documented)
    assert answer.json()["message"] == "the JSON body is nested deeper than 32 levels"


def test_the_fal_proxy_refuses_a_deep_body_in_fals_shape(http):
    answer = http.post(PROXY, content=DEEP, headers={"x-fal-target-url": SUBMIT,
                                                     "Content-Type": "application/json"})
    assert answer.status_code == 422 and "32 levels" in str(answer.json()["detail"])


def test_with_redis_down_every_endpoint_is_a_503_with_retry_after(overrides, redis):
    import httpx

    from app import create_app
    from app import services as services_module
    from tests.conftest import LiveServer
    from tests.redis_server import free_port

    port = free_port()  # nothing listens there: Redis is "down"
    app = create_app({**overrides, "redis_url": f"redis://127.0.0.1:{port}/0"})
    server = LiveServer(app, free_port())
    try:
        headers = {"Authorization": "Key ph_whatever"}
        for method, path, body in (("POST", "/v1/requests", {"input": {"image_url": "x"}}),
                                   ("GET", "/v1/requests", None),
                                   ("GET", "/v1/subscriptions", None)):
            answer = httpx.request(method, server.url + path, json=body, headers=headers,
                                   timeout=30)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.headers["Retry-After"] == "5"
            check_error(answer)
            assert "unavailable" in answer.json()["message"]
    finally:
        server.stop()
        services_module.install(None)
