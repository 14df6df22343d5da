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
