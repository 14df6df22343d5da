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


def test_a_file_over_the_upload_limit_is_refused_and_its_slot_kept(live, api_key, services):
    limit = services.settings.max_upload_bytes
    slot = call(live, INITIATE, api_key, json={"content_type": "text/plain"}).json()
    put = httpx.put(slot["upload_url"], content=b"x" * (limit + 1))
    assert put.status_code == 413
    retry = httpx.put(slot["upload_url"], content=b"fits")  # the slot was not used up
    assert retry.status_code == 200 and httpx.get(slot["file_url"]).content == b"fits"
    assert httpx.put(slot["upload_url"], content=b"again").status_code == 404  # now it is


def test_a_client_gone_mid_body_does_not_use_up_its_slot(live, api_key):
    import socket
    from urllib.parse import urlsplit

    slot = call(live, INITIATE, api_key, json={"content_type": "text/plain"}).json()
    url = urlsplit(slot["upload_url"])
    with socket.create_connection((url.hostname, url.port)) as gone:
        gone.sendall(f"PUT {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 10)
    retry = httpx.put(slot["upload_url"], content=b"whole")
    assert retry.status_code == 200 and httpx.get(slot["file_url"]).content == b"whole"


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
def test_a_part_sent_again_after_it_was_named_is_refused_and_the_upload_stays_open(
        live, api_key, services):
    slot = initiate_multipart(live, api_key)
    named = httpx.put(f"{slot['upload_url']}/1", content=b"first").json()
    again = httpx.put(f"{slot['upload_url']}/1", content=b"other")
    assert again.status_code == 200
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [named]})
    assert done.status_code == 422 and "part 1 is not the one uploaded" in done.text
    assert httpx.get(slot["file_url"]).status_code == 404
    fixed = httpx.post(slot["upload_url"] + "/complete", json={"parts": [again.json()]})
    assert fixed.status_code == 200 and httpx.get(slot["file_url"]).content == b"other"
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
def test_a_wrong_etag_in_complete_names_the_part_and_loses_nothing(live, api_key, services,
                                                                  storage_kind):
    slot = initiate_multipart(live, api_key)
    one = httpx.put(f"{slot['upload_url']}/1", content=b"a" * 100).json()
    two = httpx.put(f"{slot['upload_url']}/2", content=b"b" * 100).json()
    calls = s3_calls(services) if storage_kind == "s3" else []
    wrong = httpx.post(slot["upload_url"] + "/complete",
                       json={"parts": [one, {**two, "etag": "0" * 32}]})
    assert wrong.status_code == 422 and "part 2 is not the one uploaded" in wrong.text
    assert calls == [] and httpx.get(slot["file_url"]).status_code == 404
    assert len(parts_kept(services)) == 2  # both still there for a corrected complete
    fixed = httpx.post(slot["upload_url"] + "/complete", json={"parts": [one, two]})
    assert fixed.status_code == 200, fixed.text
    assert httpx.get(slot["file_url"]).content == b"a" * 100 + b"b" * 100
    assert parts_kept(services) == []


@BOTH
def test_a_join_still_checks_each_parts_bytes_in_storage(services):
    from app.storage import new_key

    storage, upload = services.storage, new_key("")
    etag = storage.put_part(upload, 1, b"first")
    storage.put_part(upload, 1, b"other")  # what the slot said is no longer what is stored
    assert storage.assemble(upload, [(1, etag)], "text/plain", "x", new_key("")) is None
    assert parts_kept(services) == []


def test_a_part_storage_failed_to_keep_is_not_counted(live, api_key, services):
    slot = initiate_multipart(live, api_key)
    upload_id = slot["upload_url"].rsplit("/", 1)[1]
    blocked = Path(services.settings.files_dir) / ".parts" / upload_id
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_bytes(b"")  # a file where the part's folder goes: the write fails
    failed = httpx.put(f"{slot['upload_url']}/1", content=b"abc")
    assert failed.status_code == 500
    done = httpx.post(slot["upload_url"] + "/complete",
                      json={"parts": [{"partNumber": 1, "etag": "anything"}]})
    assert done.status_code == 422 and "part 1 was never uploaded" in done.text
    blocked.unlink()
    part = httpx.put(f"{slot['upload_url']}/1", content=b"abc")
    assert part.status_code == 200  # the upload stayed open to take it again
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part.json()]})
    assert done.status_code == 200 and httpx.get(slot["file_url"]).content == b"abc"


@pytest.mark.parametrize("storage_kind", ["s3"], indirect=True)
class TestAPartStillOnItsWayToTheBucket:
    """Each part's PutObject held by a relay until the test lets it through."""

    @pytest.fixture
    def gate(self, s3_server):
        from tests.slow_door import PartGate

        gate = PartGate(s3_server.port)
        yield gate
        gate.stop()

    @pytest.fixture
    def overrides(self, overrides, gate):
        return {**overrides, "storage_endpoint_url": gate.url}

    def put_held(self, slot: dict, number: int, data: bytes, gate) -> dict:
        """PUT a part from a thread; return once its bytes are held on their way."""
        import threading

        answer: dict = {}
        thread = threading.Thread(target=lambda: answer.setdefault("put", httpx.put(
            f"{slot['upload_url']}/{number}", content=data, timeout=120)))
        thread.start()
        assert gate.arrived.wait(60)
        answer["thread"] = thread
        return answer

    def finish(self, answer: dict, gate) -> httpx.Response:
        gate.release()
        answer["thread"].join()
        return answer["put"]

    def test_complete_does_not_join_it_and_the_upload_stays_open(self, live, api_key, gate,
                                                                 services):
        import hashlib

        slot = initiate_multipart(live, api_key)
        held = self.put_held(slot, 1, b"abc", gate)
        etag = hashlib.md5(b"abc").hexdigest()  # what S3 will answer for it
        early = httpx.post(slot["upload_url"] + "/complete",
                           json={"parts": [{"partNumber": 1, "etag": etag}]})
        assert early.status_code == 422 and "part 1 was never uploaded" in early.text
        part = self.finish(held, gate)
        assert part.status_code == 200 and part.json()["etag"] == etag
        done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part.json()]})
        assert done.status_code == 200 and httpx.get(slot["file_url"]).content == b"abc"
        assert parts_kept(services) == []

    def test_one_stored_after_complete_is_refused_and_removed(self, live, api_key, gate,
                                                             services):
        slot = initiate_multipart(live, api_key)
        gate.release()
        first = httpx.put(f"{slot['upload_url']}/1", content=b"abc").json()
        gate.opened.clear()
        held = self.put_held(slot, 2, b"late", gate)
        done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [first]})
        assert done.status_code == 200 and httpx.get(slot["file_url"]).content == b"abc"
        late = self.finish(held, gate)
        assert late.status_code == 404 and "part 2 came after it" in late.text
        assert parts_kept(services) == []


def s3_calls(services) -> list[str]:
    """The names of the S3 operations the app's storage client sends from now on."""
    calls: list[str] = []
    services.storage.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


@BOTH
def test_a_part_never_uploaded_is_refused_before_storage_and_the_upload_stays_open(
        live, api_key, services, storage_kind):
    slot = initiate_multipart(live, api_key)
    part = httpx.put(f"{slot['upload_url']}/1", content=b"abc").json()
    calls = s3_calls(services) if storage_kind == "s3" else []
    never = [{"partNumber": n, "etag": "x"} for n in range(2, 3002)]
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part, *never]})
    assert done.status_code == 422
    assert "part 2 was never uploaded" in done.text and f"{slot['upload_url']}/2" in done.text
    assert calls == []  # not one HEAD (of 3000) to find what the slot already says
    assert httpx.get(slot["file_url"]).status_code == 404
    fixed = httpx.post(slot["upload_url"] + "/complete", json={"parts": [part]})
    assert fixed.status_code == 200 and httpx.get(slot["file_url"]).content == b"abc"
    assert parts_kept(services) == []


@pytest.mark.parametrize("parts,says", [
    ([{"partNumber": n, "etag": "x"} for n in range(1, 10_002)], "at most 10000"),
    ([{"partNumber": 0, "etag": "x"}], "partNumber 0 is out of range"),
    ([{"partNumber": 10_001, "etag": "x"}], "partNumber 10001 is out of range"),
], ids=["10001 parts", "part 0", "part 10001"])
def test_a_complete_naming_more_parts_than_an_upload_has_is_a_422(live, api_key, services,
                                                                   parts, says):
    slot = initiate_multipart(live, api_key)
    part = httpx.put(f"{slot['upload_url']}/1", content=b"abc").json()
    done = httpx.post(slot["upload_url"] + "/complete", json={"parts": parts})
    assert done.status_code == 422 and says in done.text
    assert httpx.post(slot["upload_url"] + "/complete",
                      json={"parts": [part]}).status_code == 200


@pytest.mark.parametrize("storage_kind", ["s3"], indirect=True)
def test_s3_checks_the_named_parts_in_calls_that_do_not_grow_with_them(services):
    from app.storage import new_key

    storage = services.storage
    calls_per_check = []
    for named in (1, 500):
        upload = new_key("")
        for number in range(1, 4):
            storage.put_part(upload, number, b"abc")
        calls = s3_calls(services)
        parts = [(n, "not-its-etag") for n in range(1, named + 1)]
        assert storage.assemble(upload, parts, "text/plain", "x", new_key("")) is None
        calls_per_check.append(len(calls))
    assert calls_per_check[0] == calls_per_check[1]  # the first wrong part ends the check
    assert parts_kept(services) == []


def test_a_part_that_comes_after_complete_is_refused_and_leaves_no_key(services):
    from app.store import uploads
    from app.store.keys import key_for_upload_slot

    r, slot, limit = services.redis, "a-multipart-slot", 1000
    uploads.open_slot(r, slot, {"key": "k", "multipart": "1"}, 3600)
    assert uploads.add_part(r, slot, 1, 3, "e1", limit) == "added"
    assert 0 < r.ttl(key_for_upload_slot(slot)) <= 3600  # counting keeps the slot's expiry
    taken = uploads.take(r, slot)  # complete took it meanwhile
    assert (taken["part:1"], taken["etag:1"]) == ("3", "e1")
    assert uploads.add_part(r, slot, 2, 5, "e2", limit) == "closed"
    assert not r.exists(key_for_upload_slot(slot))  # no hash made again, without a TTL
    single = "a-single-slot"
    uploads.open_slot(r, single, {"key": "k", "multipart": ""}, 3600)
    assert uploads.add_part(r, single, 1, 3, "e1", limit) == "closed"


def test_a_part_sent_after_complete_is_a_404_that_says_so(live, api_key, services):
    slot = initiate_multipart(live, api_key)
    part = httpx.put(f"{slot['upload_url']}/1", content=b"abc").json()
    assert httpx.post(slot["upload_url"] + "/complete", json={"parts": [part]}).status_code \
        == 200
    late = httpx.put(f"{slot['upload_url']}/2", content=b"late")
    assert late.status_code == 404 and "completed" in late.text
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
        two = httpx.put(f"{slot['upload_url']}/2", content=b"z" * 2)
        assert two.status_code == 200
        # Sent again too large, part 2 is refused and its earlier bytes, replaced, uncounted.
        assert httpx.put(f"{slot['upload_url']}/2", content=b"w" * 3).status_code == 413
        done = httpx.post(slot["upload_url"] + "/complete", json={"parts": [two.json()]})
        assert done.status_code == 422 and "part 2 was never uploaded" in done.text
        assert httpx.put(f"{slot['upload_url']}/2", content=b"v" * 2).status_code == 200
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
