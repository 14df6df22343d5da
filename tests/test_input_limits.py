"""A photo's bounds through the API and the worker: a picture thinner than the engine can
pose is refused naming the limit, a pose image never comes out larger than its format or
POSEHOOK_MAX_PIXELS holds, and our own stored file is checked against the byte limit before
it is read (at submit, and again by the worker)."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

from app import create_app
from app import services as services_module
from app.store import apikeys
from tests import sinks
from tests.conftest import LiveServer
from tests.contract import check


def png(width: int, height: int) -> bytes:
    """A flat grey PNG of that size."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 120, 120)).save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_a_photo_thinner_than_512_to_1_is_refused_at_submit_naming_the_limit(http):
    for width, height in ((1, 600), (1100, 2)):
        answer = http.post("/v1/requests", json={"input": {"image_url": data_uri(
            png(width, height))}})
        assert answer.status_code == 422, answer.text
        check(answer, "POST", "/v1/requests")
        error = answer.json()
        assert error["code"] == "invalid_input"
        assert error["errors"] == {"input.image_url": [error["message"]]}
        assert f"{width}x{height}" in error["message"] and "512:1" in error["message"]
    # 512:1 itself is still a photo.
    assert http.post("/v1/requests", json={"input": {"image_url": data_uri(
        png(2, 1024))}}).status_code == 202


def test_a_too_thin_photo_downloaded_fails_the_request_as_the_callers_input(http, run_jobs):
    server, url = sinks.serve_photo(png(3, 2000))
    try:
        request_id = http.post("/v1/requests", json={"input": {"image_url": url}}).json()[
            "request_id"]
        run_jobs()
    finally:
        server.shutdown()
    record = http.get(f"/v1/requests/{request_id}").json()
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "input_error"
    assert record["error"]["field"] == "input.image_url"
    assert "3x2000" in record["error"]["message"] and "512:1" in record["error"]["message"]


def test_a_pose_image_past_its_formats_side_or_max_pixels_is_made_smaller_and_logged(
        http, run_jobs, services):
    # 4000x64 with image_resolution 1024 asks for 64000x1024 (65.5 MP): WebP holds 16383
    # pixels a side, POSEHOOK_MAX_PIXELS (40 MP) bounds the PNG.
    uri = data_uri(png(4000, 64))
    ids = {fmt: http.post("/v1/requests", json={"input": {
        "image_url": uri, "image_resolution": 1024, "output_format": fmt,
        "return_keypoints": True}}).json()["request_id"] for fmt in ("webp", "png")}
    run_jobs()
    for fmt, (width, height) in (("webp", (16383, 262)), ("png", (50000, 800))):
        record = http.get(f"/v1/requests/{ids[fmt]}").json()
        assert record["status"] == "COMPLETED", record
        image = record["output"]["image"]
        assert (image["width"], image["height"]) == (width, height)
        assert width * height <= services.settings.max_pixels
        assert record["output"]["keypoints"]["canvas_width"] == width
        with Image.open(io.BytesIO(httpx.get(image["url"]).content)) as stored:
            assert stored.size == (width, height) and stored.format == fmt.upper()
        logs = [line["message"] for line in http.get(
            f"/v1/requests/{ids[fmt]}/status", params={"logs": 1}).json()["logs"]]
        assert f"pose image made {width}x{height}, not the 64000x1024 asked" in "\n".join(logs)


def test_our_own_file_over_the_photo_byte_limit_is_413_at_submit(overrides, redis,
                                                                  sample_bytes):
    small = create_app({**overrides, "max_download_bytes": len(sample_bytes) - 1})
    key = apikeys.create(small.extensions["posehook"].redis, "small")[1]
    server = LiveServer(small, int(overrides["public_base_url"].rsplit(":", 1)[1]))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Key {key}"}) as client:
            upload = client.post("/v1/files", files={"file": ("me.jpg", sample_bytes)})
            assert upload.status_code == 201
            answer = client.post("/v1/requests", json={"input": {
                "image_url": upload.json()["url"]}})
    finally:
        server.stop()
    assert answer.status_code == 413, answer.text
    error = answer.json()
    assert error["code"] == "too_large"
    assert error["errors"] == {"input.image_url": [error["message"]]}
    assert f"{len(sample_bytes)} bytes" in error["message"]
    assert "POSEHOOK_MAX_DOWNLOAD_BYTES" in error["message"]


def test_the_worker_checks_our_own_files_size_before_reading_it(
        http, services, overrides, sample_bytes, run_jobs):
    upload = http.post("/v1/files", files={"file": ("me.jpg", sample_bytes)}).json()
    request_id = http.post("/v1/requests", json={"input": {"image_url": upload["url"]}}).json()[
        "request_id"]
    # The worker restarts with a lower limit before it takes the request.
    small = create_app({**overrides, "max_download_bytes": len(sample_bytes) - 1}).extensions[
        "posehook"]
    services_module.install(small)
    try:
        run_jobs()
    finally:
        services_module.install(services)
    record = http.get(f"/v1/requests/{request_id}").json()
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "input_error" and "POSEHOOK_MAX_DOWNLOAD_BYTES" in \
        record["error"]["message"]
