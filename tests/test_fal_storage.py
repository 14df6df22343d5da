"""fal-style storage through the proxy: any file up to the limit; non-images fail only as inputs."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from app.models import Status
from app.store import requests as store
from tests.test_api_fal import SUBMIT, call

BOTH = pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)

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


def parts_kept(services) -> list[str]:
    """The parts of unfinished multipart uploads, wherever the storage keeps them."""
    storage = services.storage
    if not hasattr(storage, "client"):
        folder = Path(services.settings.files_dir) / ".parts"
        return sorted(str(p) for p in folder.rglob("*") if p.is_file())
    listed = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=storage.prefix)
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])
    return sorted(o["Key"] for o in listed.get("Contents", []) if "/.parts/" in o["Key"]) + [
        u["UploadId"] for u in uploads]


@BOTH
def test_a_multipart_upload_joins_its_parts_in_order(live, api_key, services):
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
    assert "big.zip" in got.headers["content-disposition"]
    again = httpx.post(slot["upload_url"] + "/complete", json={"parts": parts[1:]})
    assert again.status_code == 404  # used once
    assert parts_kept(services) == []


@pytest.mark.parametrize("storage_kind", ["s3"], indirect=True)
def test_parts_of_fals_size_are_joined_inside_the_bucket(live, api_key, services):
    from app.storage_s3 import MIN_PART

    slot = initiate_multipart(live, api_key)
    chunks = [b"a" * MIN_PART, b"b" * (MIN_PART + 7), b"tail"]  # S3's floor but for the last
    parts = [httpx.put(f"{slot['upload_url']}/{n}", content=c, timeout=60).json()
             for n, c in enumerate(chunks, 1)]
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": parts}, timeout=60)
    assert done.status_code == 200, done.text
    got = httpx.get(slot["file_url"], timeout=60)
    assert got.status_code == 200 and got.content == b"".join(chunks)
    key = slot["file_url"].rsplit("/", 1)[1]
    head = services.storage.client.head_object(Bucket=services.storage.bucket,
                                               Key=services.storage.prefix + key)
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a three-part object
    assert parts_kept(services) == []


@BOTH
def test_a_part_sent_again_after_it_was_named_is_not_joined(live, api_key, services):
    slot = initiate_multipart(live, api_key)
    named = httpx.put(f"{slot['upload_url']}/1", content=b"first").json()
    assert httpx.put(f"{slot['upload_url']}/1", content=b"other").status_code == 200
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [named]})
    assert done.status_code == 422 and "not the one uploaded" in done.text
    assert httpx.get(slot["file_url"]).status_code == 404
    assert parts_kept(services) == []


@BOTH
def test_a_part_named_twice_is_refused_so_a_join_holds_only_what_was_uploaded(
        live, api_key, services):
    slot = initiate_multipart(live, api_key)
    part = httpx.put(f"{slot['upload_url']}/1", content=b"x" * 1000).json()
    twice = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part] * 50})
    assert twice.status_code == 422 and "each partNumber once" in twice.text
    assert httpx.get(slot["file_url"]).status_code == 404
    once = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part]})
    assert once.status_code == 200, once.text  # the slot is still there to complete
    assert httpx.get(slot["file_url"]).content == b"x" * 1000


@BOTH
def test_a_multipart_upload_with_a_wrong_or_missing_part_stores_nothing(live, api_key,
                                                                        services):
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
    assert parts_kept(services) == []


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


@BOTH
def test_the_sweeper_drops_the_parts_of_a_multipart_upload_never_completed(live, api_key,
                                                                           services):
    from jobs import sweep

    slot = initiate_multipart(live, api_key)
    for number in (1, 2):
        assert httpx.put(f"{slot['upload_url']}/{number}", content=b"abc").status_code == 200
    assert len(parts_kept(services)) == 2
    assert sweep.sweep()["stale_parts"] == 0  # still within its slot's hour
    later = time.time() + 3601
    assert sweep.sweep(later)["stale_parts"] == 1 and parts_kept(services) == []
