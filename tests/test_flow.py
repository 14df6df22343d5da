"""End to end with real processes: gunicorn, the RQ worker and the inference worker.

The sample photo goes in as a data URI, as an uploaded file and as an http URL; a
pose image of the input's size comes out, with colour where the woman stands.
"""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from app import queues
from app.store import apikeys
from tests import sinks
from tests.conftest import SAMPLE
from tests.contract import check
from tests.stack import Stack


def serve_photo(delay: float = 0.0):
    """Serve the sample photo on 127.0.0.1 (after ``delay`` seconds)."""
    return sinks.serve_photo(SAMPLE.read_bytes(), delay)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    """The service as subprocesses, for every test in this module."""
    with Stack(redis_url, tmp_path_factory.mktemp("stack"),
               env={"POSEHOOK_JOB_TIMEOUT": "20", "POSEHOOK_LEASE_GRACE": "1"}) as running:
        yield running


@pytest.fixture
def client(stack):
    """An httpx client on the stack with a fresh key."""
    from redis import Redis

    redis = Redis.from_url(stack.redis_url, decode_responses=True)
    key = apikeys.create(redis, "flow")[1]
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Key {key}"},
                      timeout=60) as c:
        yield c


def wait_done(client: httpx.Client, request_id: str, seconds: float = 90) -> dict:
    """Poll the status until the request ends; return the whole record."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        status = client.get(f"/v1/requests/{request_id}/status").json()["status"]
        if status in ("COMPLETED", "FAILED", "CANCELLED"):
            return client.get(f"/v1/requests/{request_id}").json()
        time.sleep(0.2)
    raise AssertionError(f"request {request_id} did not finish in {seconds}s")


def assert_pose_image(client: httpx.Client, record: dict) -> None:
    """The output is a PNG of the photo's size with colour on the woman, black elsewhere."""
    assert record["status"] == "COMPLETED", record
    image = record["output"]["image"]
    assert image["content_type"] == "image/png"
    assert (image["width"], image["height"]) == (194, 259)
    answer = httpx.get(image["url"])
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert len(answer.content) == image["file_size"]
    picture = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    assert picture.shape == (259, 194, 3)
    lit = np.argwhere(picture.max(axis=2) > 0)
    assert len(lit) > 500
    # She stands in the middle of the photo: the skeleton's box lies inside it.
    top, left = lit.min(axis=0)
    bottom, right = lit.max(axis=0)
    assert 20 < left and right < 180 and top < 80 and bottom > 150
    assert picture[:10, :10].max() == 0


def test_data_uri_in_pose_image_out(client):
    uri = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
    answer = client.post("/v1/requests", json={"input": {"image_url": uri}})
    assert answer.status_code == 202
    record = wait_done(client, answer.json()["request_id"])
    check(client.get(f"/v1/requests/{record['request_id']}"), "GET", "/v1/requests/{request_id}")
    assert_pose_image(client, record)
    assert record["engine"].startswith("mediapipe")
    status = client.get(f"/v1/requests/{record['request_id']}/status", params={"logs": 1}).json()
    assert status["metrics"]["inference_time"] > 0
    assert any("found" in line["message"] for line in status["logs"])


def test_uploaded_file_in_pose_image_out(client):
    upload = client.post("/v1/files", files={"file": ("me.jpg", SAMPLE.read_bytes(), "image/jpeg")})
    assert upload.status_code == 201
    check(upload, "POST", "/v1/files")
    assert (upload.json()["width"], upload.json()["height"]) == (194, 259)
    served = httpx.get(upload.json()["url"])
    assert served.content == SAMPLE.read_bytes()
    assert served.headers["content-type"] == "image/jpeg"
    answer = client.post("/v1/requests", json={"input": {"image_url": upload.json()["url"]}})
    assert_pose_image(client, wait_done(client, answer.json()["request_id"]))


def test_http_url_in_pose_image_out_with_prefer_wait(client):
    server, url = serve_photo()
    try:
        answer = client.post("/v1/requests", json={"input": {"image_url": url}},
                             headers={"Prefer": "wait=60"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["Preference-Applied"] == "wait=60"
        check(answer, "POST", "/v1/requests")
        assert_pose_image(client, answer.json())
    finally:
        server.shutdown()


def test_bytes_that_are_not_an_image_fail_the_request_not_the_worker(client):
    upload_dir_url = client.post("/v1/files", content=SAMPLE.read_bytes()).json()["url"]
    # A URL that answers with text: fails the request with a reason, and the worker goes on.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TextHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/notes.txt"
        failed = wait_done(client, client.post("/v1/requests", json={
            "input": {"image_url": url}}).json()["request_id"])
        assert failed["status"] == "FAILED"
        assert "the bytes are not an image" in failed["error"]["message"]
        ok = client.post("/v1/requests", json={"input": {"image_url": upload_dir_url}})
        assert wait_done(client, ok.json()["request_id"])["status"] == "COMPLETED"
    finally:
        server.shutdown()


def test_a_thin_photo_is_posed_and_the_inference_worker_lives_on(client, stack):
    # 8x1000 with the default detect_resolution (512 across) was 512x64000 for MediaPipe,
    # whose OpenCV aborted the worker process on it; the engine now sees it 8192 long.
    buffer = io.BytesIO()
    Image.new("RGB", (8, 1000), (120, 120, 120)).save(buffer, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    record = wait_done(client, client.post("/v1/requests", json={
        "input": {"image_url": uri}}).json()["request_id"])
    assert record["status"] == "COMPLETED", record
    assert (record["output"]["image"]["width"], record["output"]["image"]["height"]) == (8, 1000)
    assert stack.procs["inference"].poll() is None, stack.log("inference")[-2000:]


class _TextHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"these are not the pixels you are looking for")

    def log_message(self, *args):
        pass


def _kill_mid_job_then_sweep(client, stack, request_id: str) -> dict:
    """SIGKILL the inference worker once the request runs, start another, sweep until it ends."""
    from redis import Redis

    deadline = time.time() + 30
    while client.get(f"/v1/requests/{request_id}/status").json()["status"] != "IN_PROGRESS":
        assert time.time() < deadline, "the job never started"
        time.sleep(0.05)
    stack.kill("inference")  # SIGKILL while it downloads the photo
    stack.start_inference()
    rq = Redis.from_url(stack.redis_url)
    record: dict = {}
    deadline = time.time() + 90
    while time.time() < deadline:
        # The cron process runs the sweeper every 30 s; here we ask for a pass now.
        queues.enqueue_sweep(rq)
        time.sleep(1)
        record = client.get(f"/v1/requests/{request_id}").json()
        if record["status"] in ("COMPLETED", "FAILED"):
            break
    return record


def test_a_worker_killed_mid_job_does_not_lose_the_request(client, stack):
    server, url = serve_photo(delay=4)
    try:
        request_id = client.post("/v1/requests", json={"input": {"image_url": url}}).json()[
            "request_id"]
        record = _kill_mid_job_then_sweep(client, stack, request_id)
        assert record["status"] == "COMPLETED", record
        logs = client.get(f"/v1/requests/{request_id}/status", params={"logs": 1}).json()["logs"]
        assert any("worker was lost" in line["message"] for line in logs)
        assert any("attempt 2" in line["message"] for line in logs)
    finally:
        server.shutdown()



def test_with_fals_no_retry_a_worker_killed_mid_job_fails_the_request(client, stack):
    server, url = serve_photo(delay=4)
    try:
        submitted = client.post("/api/fal/proxy", json={"image_url": url}, headers={
            "x-fal-target-url": "https://queue.fal.run/fal-ai/dwpose", "x-fal-no-retry": "1"})
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["request_id"]
        record = _kill_mid_job_then_sweep(client, stack, request_id)
        assert record["status"] == "FAILED", record
        assert record["error"]["type"] == "worker_lost"
        assert "x-fal-no-retry" in record["error"]["message"]
        logs = client.get(f"/v1/requests/{request_id}/status", params={"logs": 1}).json()["logs"]
        assert not any("attempt 2" in line["message"] for line in logs)
    finally:
        server.shutdown()
