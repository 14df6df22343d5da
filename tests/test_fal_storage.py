"""fal-style storage through the proxy: any file up to the limit; non-images fail only as inputs."""

from __future__ import annotations

import httpx
import pytest

from app.models import Status
from app.store import requests as store
from tests.test_api_fal import SUBMIT, call

INITIATE = "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"


def upload(live, api_key, data: bytes, content_type: str, name: str = "hello.txt") -> str:
    """Initiate, then PUT the bytes as fal's client does; return the file's URL."""
    slot = call(live, INITIATE, api_key, json={"content_type": content_type, "file_name": name})
    assert slot.status_code == 200, slot.text
    put = httpx.put(slot.json()["upload_url"], content=data)  # the initiate said the type
    assert put.status_code == 200, put.text
    return slot.json()["file_url"]


OCTETS = "application/octet-stream"


@pytest.mark.parametrize("declared,served", [("text/plain", "text/plain"),
                                             ("application/json", "application/json"),
                                             ("text/html; charset=utf-8", "text/html"),
                                             ("image/png", OCTETS),
                                             ("text/html\r\nX-Evil: 1", OCTETS)])
def test_any_file_is_taken_and_served_back_as_a_download(live, api_key, declared, served):
    url = upload(live, api_key, b"Hello", declared)
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == b"Hello"
    assert got.headers["content-type"].split(";")[0] == served  # never an image it is not
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["x-content-type-options"] == "nosniff" and "X-Evil" not in got.headers


def test_an_image_keeps_the_type_its_bytes_say(live, api_key, sample_bytes):
    url = upload(live, api_key, sample_bytes, "application/octet-stream", "photo")
    got = httpx.get(url)
    assert got.headers["content-type"] == "image/jpeg"
    assert not got.headers["content-disposition"].startswith("attachment")


def test_a_file_over_the_upload_limit_is_refused(live, api_key, services):
    limit = services.settings.max_upload_bytes
    slot = call(live, INITIATE, api_key, json={"content_type": "text/plain"}).json()
    put = httpx.put(slot["upload_url"], content=b"x" * (limit + 1))
    assert put.status_code == 413


def test_a_non_image_fails_only_when_used_as_the_image_naming_the_field(live, api_key,
                                                                        services, run_jobs):
    url = upload(live, api_key, b"Hello", "text/plain")
    submitted = call(live, SUBMIT, api_key, json={"image_url": url})
    assert submitted.status_code == 200  # taken: it is a file of ours
    run_jobs()
    request_id = submitted.json()["request_id"]
    assert store.get(services.redis, request_id).status is Status.FAILED
    result = call(live, f"{SUBMIT}/requests/{request_id}", api_key, method="GET")
    assert result.status_code == 422 and result.json()["detail"][0]["loc"] == [
        "body", "image_url"]
