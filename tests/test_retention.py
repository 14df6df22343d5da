"""Retention: every stored file has an owner and an expiry, and the janitor deletes it then.

Run against both storages (the local directory and moto's S3 server); expiry is tested with
the sweeper's ``now=``, never by waiting.
"""

from __future__ import annotations

import time

import httpx
import pytest

from app import retention
from app.models import Status
from app.store import files
from app.store import requests as store
from app.store.keys import key_for_request

BOTH = pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)


def upload(http, data: bytes) -> dict:
    answer = http.post("/v1/files", content=data, headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def sweep_at(run_jobs, now: float) -> None:
    """Run the sweeper as of ``now`` and every job it enqueues (the janitor among them)."""
    from jobs.sweep import sweep

    assert sweep(now=now)["files"]
    run_jobs()


def metric(live, name: str) -> int:
    text = httpx.get(f"{live.url}/metrics").text
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


@BOTH
def test_an_unused_upload_goes_after_the_upload_ttl(http, live, services, sample_bytes,
                                                    run_jobs):
    before = time.time()
    stored = upload(http, sample_bytes)
    facts = files.facts(services.redis, stored["key"])
    assert facts["owner"] == "upload" and int(facts["size"]) == len(sample_bytes)
    ttl = services.settings.upload_ttl
    assert before + ttl <= facts["until"] <= time.time() + ttl
    assert metric(live, "posehook_storage_files") == 1
    assert metric(live, "posehook_storage_bytes") == len(sample_bytes)
    sweep_at(run_jobs, before + ttl - 1)
    assert httpx.get(stored["url"]).status_code == 200
    assert metric(live, "posehook_storage_files_expired") == 0
    sweep_at(run_jobs, time.time() + ttl + 1)
    assert httpx.get(stored["url"]).status_code == 404
    assert services.storage.stat(stored["key"]) is None
    assert files.facts(services.redis, stored["key"]) is None
    assert metric(live, "posehook_storage_files") == 0
    assert metric(live, "posehook_storage_bytes") == 0


@BOTH
def test_a_requests_input_and_output_go_when_its_record_expires(http, services, sample_bytes,
                                                                run_jobs):
    stored = upload(http, sample_bytes)
    request_id = http.post("/v1/requests", json={"input": {"image_url": stored["url"]}}
                           ).json()["request_id"]
    run_jobs()
    record = store.get(services.redis, request_id)
    assert record.status is Status.COMPLETED, record.error
    output_key = services.storage.key_from_url(record.output["image"]["url"])
    expires = services.redis.expiretime(key_for_request(request_id))  # when Redis drops it
    for key in (stored["key"], output_key):
        facts = files.facts(services.redis, key)
        assert facts["owner"] == f"request:{request_id}"
        assert abs(facts["until"] - expires) <= 1
    # Past the upload TTL the input stays: its request uses it.
    sweep_at(run_jobs, time.time() + services.settings.upload_ttl + 1)
    assert services.storage.stat(stored["key"]) is not None
    sweep_at(run_jobs, expires - 2)
    assert services.storage.stat(stored["key"]) and services.storage.stat(output_key)
    sweep_at(run_jobs, expires + 1)
    assert services.storage.stat(stored["key"]) is None
    assert services.storage.stat(output_key) is None
    assert files.usage(services.redis, expires + 1) == {"files": 0, "bytes": 0, "due": 0}


@BOTH
def test_the_janitor_is_batched_safe_twice_and_retakes_what_a_crash_left(
        http, services, sample_bytes):
    keys = [upload(http, sample_bytes)["key"] for _ in range(3)]
    later = time.time() + services.settings.upload_ttl + 1
    r = services.redis
    first = files.take_due(r, later, 2, retention.LEASE)  # a janitor that then crashed
    assert len(first) == 2
    # While it is being deleted, a file can no longer be used by a new request.
    refused = http.post("/v1/requests", json={"input": {
        "image_url": services.storage.url_for(first[0])}})
    assert refused.status_code == 422 and "expired" in refused.text
    assert retention.clean(services, later) == {"deleted": 1, "due": 2}
    assert retention.clean(services, later) == {"deleted": 0, "due": 2}
    assert services.storage.stat(first[0]) is not None  # still within the crashed take's lease
    after_lease = later + retention.LEASE + 1
    assert retention.clean(services, after_lease) == {"deleted": 2, "due": 0}
    assert retention.clean(services, after_lease) == {"deleted": 0, "due": 0}
    assert all(services.storage.stat(k) is None for k in keys)
    assert files.forget(r, first) == 0  # forgetting twice changes nothing
    assert files.usage(r, after_lease) == {"files": 0, "bytes": 0, "due": 0}


def test_a_data_uri_input_belongs_to_its_request(http, services, sample_bytes):
    import base64

    uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
    request_id = http.post("/v1/requests", json={"input": {"image_url": uri}}
                           ).json()["request_id"]
    record = store.get(services.redis, request_id)
    key = services.storage.key_from_url(record.input["image_url"])
    assert files.facts(services.redis, key)["owner"] == f"request:{request_id}"


@BOTH
def test_a_fal_storage_upload_is_an_upload_until_used(live, api_key, services, sample_bytes):
    from tests.test_api_fal import PROXY

    started = httpx.post(live.url + PROXY, json={"content_type": "image/jpeg"}, headers={
        "x-fal-target-url": "https://rest.alpha.fal.ai/storage/upload/initiate",
        "Authorization": f"Key {api_key}"})
    assert started.status_code == 200, started.text
    put = httpx.put(started.json()["upload_url"], content=sample_bytes)
    assert put.status_code == 200, put.text
    key = services.storage.key_from_url(started.json()["file_url"])
    assert files.facts(services.redis, key)["owner"] == "upload"
    assert httpx.get(started.json()["file_url"]).content == sample_bytes



@BOTH
def test_the_backfill_gives_files_stored_before_the_index_an_owner_once(
        app, services, sample_bytes, run_jobs):
    storage = services.storage
    # Stored as before retention existed: in storage, nowhere in the index.
    old = [storage.put(sample_bytes[:n], "image/jpeg") for n in (100, 200, 300, 400, 500)]
    tracked = storage.put(sample_bytes, "image/jpeg")
    retention.keep_upload(services, tracked)
    kept_until = files.facts(services.redis, tracked.key)["until"]
    ttl, now = 3600, time.time()

    runner = app.test_cli_runner()
    first = runner.invoke(args=["files", "backfill", "--ttl", str(ttl), "--batch", "2"])
    assert first.exit_code == 0, first.output
    assert "6 stored file(s), 5 newly indexed" in first.output
    for stored in old:
        facts = files.facts(services.redis, stored.key)
        assert facts["owner"] == "backfill" and int(facts["size"]) == stored.file_size
        assert now + ttl <= facts["until"] <= time.time() + ttl
    assert files.facts(services.redis, tracked.key) == {
        "owner": "upload", "size": str(len(sample_bytes)), "until": kept_until}
    usage = files.usage(services.redis, now)
    assert usage["files"] == 6 and usage["bytes"] == 1500 + len(sample_bytes)

    again = retention.backfill(services, ttl=10 * ttl, batch=4)
    assert again == {"seen": 6, "indexed": 0}  # nothing changes the second time
    assert files.usage(services.redis, now)["bytes"] == 1500 + len(sample_bytes)
    assert files.facts(services.redis, old[0].key)["until"] <= time.time() + ttl

    sweep_at(run_jobs, time.time() + ttl + 1)  # the janitor deletes them when they are due
    assert all(storage.stat(s.key) is None for s in old)
    assert storage.stat(tracked.key) is not None  # the upload TTL (a day) is not over yet


@BOTH
def test_the_backfill_leaves_multipart_parts_and_metadata_alone(services, sample_bytes):
    storage = services.storage
    stored = storage.put(sample_bytes, "application/octet-stream")  # a key with no suffix
    storage.put_part("P" * 32, 1, b"part")
    assert retention.backfill(services) == {"seen": 1, "indexed": 1}
    facts = files.facts(services.redis, stored.key)
    assert facts["until"] >= time.time() + services.settings.request_ttl - 60
    assert list(storage.list_files()) == [(stored.key, len(sample_bytes))]


def test_the_backfill_command_refuses_a_ttl_that_is_not_positive(app):
    answer = app.test_cli_runner().invoke(args=["files", "backfill", "--ttl", "0"])
    assert answer.exit_code == 2 and "--ttl" in answer.output
