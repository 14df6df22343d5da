"""fal-style storage through the proxy: any file up to the limit; non-images fail only as inputs."""

from __future__ import annotations

import time
from pathlib import Path

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


MULTIPART = "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3"


def initiate_multipart(live, api_key, content_type: str = "application/zip") -> dict:
    slot = call(live, MULTIPART, api_key, json={"content_type": content_type,
                                                "file_name": "big.zip"})
    assert slot.status_code == 200, slot.text
    return slot.json()


def test_a_multipart_upload_joins_its_parts_in_order(live, api_key):
    slot = initiate_multipart(live, api_key)
    chunks = [b"first-" * 1000, b"second-" * 1000, b"third"]
    parts = []
    for number in (2, 1, 3, 2):  # out of order, and part 2 sent again (a client's retry)
        put = httpx.put(f"{slot['upload_url']}/{number}", content=chunks[number - 1])
        assert put.status_code == 200 and put.json()["partNumber"] == number
        parts.append(put.json())
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": parts[1:]})
    assert done.status_code == 200, done.text
    got = httpx.get(slot["file_url"])
    assert got.content == b"".join(chunks) and got.headers["content-type"] == "application/zip"
    again = httpx.post(slot["upload_url"] + "/complete", json={"parts": parts[1:]})
    assert again.status_code == 404  # used once


def test_a_multipart_upload_with_a_wrong_or_missing_part_stores_nothing(live, api_key):
    slot = initiate_multipart(live, api_key)
    part = httpx.put(f"{slot['upload_url']}/1", content=b"abc").json()
    done = httpx.post(slot["upload_url"] + "/complete",
                      json={"parts": [part, {"partNumber": 2, "etag": part["etag"]}]})
    assert done.status_code == 422
    assert httpx.get(slot["file_url"]).status_code == 404
    bad = initiate_multipart(live, api_key)
    httpx.put(f"{bad['upload_url']}/1", content=b"abc")
    wrong = httpx.post(bad["upload_url"] + "/complete",
                       json={"parts": [{"partNumber": 1, "etag": "0" * 32}]})
    assert wrong.status_code == 422 and httpx.get(bad["file_url"]).status_code == 404


class TestALimitOfTenBytes:
    @pytest.fixture
    def overrides(self, overrides):
        return {**overrides, "max_multipart_bytes": 10}

    def test_a_multipart_upload_past_its_limit_is_refused(self, live, api_key):
        slot = initiate_multipart(live, api_key)
        assert httpx.put(f"{slot['upload_url']}/1", content=b"x" * 6).status_code == 200
        # Sent again, a part replaces itself in the total: 8 bytes, not 14.
        assert httpx.put(f"{slot['upload_url']}/1", content=b"y" * 8).status_code == 200
        assert httpx.put(f"{slot['upload_url']}/2", content=b"z" * 3).status_code == 413
        assert httpx.put(f"{slot['upload_url']}/2", content=b"z" * 2).status_code == 200
        single = call(live, INITIATE, api_key, json={"content_type": "text/plain"}).json()
        assert httpx.put(single["upload_url"] + "/1", content=b"x").status_code == 404


def test_an_upload_with_fals_lifecycle_preference_is_gone_once_it_expires(live, api_key):
    slot = call(live, INITIATE, api_key, json={"content_type": "text/plain"}, headers={
        "X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds": 1}'}).json()
    assert httpx.put(slot["upload_url"], content=b"Hello").status_code == 200
    stored_by = time.time()
    kept = upload(live, api_key, b"kept", "text/plain")  # no preference: it stays
    assert httpx.get(slot["file_url"]).status_code == 200
    while time.time() <= stored_by + 1:
        time.sleep(0.05)
    assert httpx.get(slot["file_url"]).status_code == 404
    assert httpx.get(kept).content == b"kept"


@pytest.mark.parametrize("value", ["soon", "[1]", '{"expiration_duration_seconds": -5}',
                                   '{"expiration_duration_seconds": "60"}'])
def test_a_lifecycle_preference_fal_would_not_take_is_a_422(live, api_key, value):
    answer = call(live, INITIATE, api_key, json={"content_type": "text/plain"},
                  headers={"X-Fal-Object-Lifecycle": value})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["header", "x-fal-object-lifecycle"]


def test_the_sweeper_drops_the_parts_of_a_multipart_upload_never_completed(live, api_key,
                                                                           services):
    from jobs import sweep

    slot = initiate_multipart(live, api_key)
    assert httpx.put(f"{slot['upload_url']}/1", content=b"abc").status_code == 200
    parts = Path(services.settings.files_dir) / ".parts"
    assert len(list(parts.iterdir())) == 1
    assert sweep.sweep()["stale_parts"] == 0  # still within its slot's hour
    later = time.time() + 3601
    assert sweep.sweep(later)["stale_parts"] == 1 and list(parts.iterdir()) == []
