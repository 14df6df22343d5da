"""A job over its time limit fails cleanly and the inference worker goes on.

Its own module: the stack here has a 1 s limit, and no other stack may share the queue.
"""

from __future__ import annotations

import base64

import httpx

from app.store import apikeys
from tests.conftest import SAMPLE
from tests.stack import Stack
from tests.test_flow import serve_photo, wait_done


def test_a_job_over_its_time_limit_fails_cleanly_and_the_worker_goes_on(
        redis_url, tmp_path):
    """A 1 s limit against a photo that takes 3 s to arrive: FAILED with the reason."""
    from redis import Redis

    with Stack(redis_url, tmp_path / "slow", env={"POSEHOOK_JOB_TIMEOUT": "1"}) as slow:
        key = apikeys.create(Redis.from_url(redis_url, decode_responses=True), "slow")[1]
        server, url = serve_photo(delay=3)
        try:
            with httpx.Client(base_url=slow.url, headers={"Authorization": f"Key {key}"},
                              timeout=60) as c:
                late = wait_done(c, c.post("/v1/requests", json={
                    "input": {"image_url": url}}).json()["request_id"])
                assert late["status"] == "FAILED"
                assert "longer than the limit of 1 s" in late["error"]["message"]
                uri = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
                ok = wait_done(c, c.post("/v1/requests", json={
                    "input": {"image_url": uri}}).json()["request_id"])
                assert ok["status"] == "COMPLETED"
        finally:
            server.shutdown()
