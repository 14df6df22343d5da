"""Videos end to end through real processes: gunicorn, the RQ worker, the inference worker;
natively from a URL, and with the unmodified @fal-ai/client through the proxy."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from redis import Redis

from app.store import apikeys
from tests import sinks
from tests.stack import Stack
from tests.test_flow import wait_done
from tests.test_video import lit_centre
from tests.videos import HEIGHT, WIDTH, make_video, read_video

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 12


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    """The service as subprocesses, for the tests of this module."""
    with Stack(redis_url, tmp_path_factory.mktemp("video-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """One second of the sample walking right, 12 frames at 12 fps."""
    return make_video(tmp_path_factory.mktemp("clip") / "walk.mp4", frames=FRAMES, fps=12,
                      shift=100)


def key_for(stack: Stack) -> str:
    return apikeys.create(Redis.from_url(stack.redis_url, decode_responses=True), "video")[1]


def assert_pose_video(data: bytes) -> None:
    """The same frames, size and rate as the clip, and a skeleton that walks right."""
    frames, facts = read_video(data)
    assert (len(frames), facts["width"], facts["height"], facts["rate"]) == (
        FRAMES, WIDTH, HEIGHT, 12)
    assert 60 < lit_centre(frames[-1]) - lit_centre(frames[0]) < 140


def test_a_video_url_is_posed_by_the_inference_worker(stack, clip):
    server, url = sinks.serve_photo(clip.read_bytes())
    try:
        with httpx.Client(base_url=stack.url, headers={
                "Authorization": f"Key {key_for(stack)}"}, timeout=60) as client:
            request_id = client.post("/v1/requests", json={"input": {
                "video_url": url, "smoothing": "off"}}).json()["request_id"]
            record = wait_done(client, request_id)
    finally:
        server.shutdown()
    assert record["status"] == "COMPLETED", record
    assert_pose_video(httpx.get(record["output"]["video"]["url"]).content)


def test_a_thin_video_is_posed_and_the_inference_worker_lives_on(stack, tmp_path):
    # 16x1200 at the default detect_resolution was 512x38400 a frame for MediaPipe, whose
    # OpenCV aborted the worker process on it; the engine now sees each frame 8192 long.
    thin = make_video(tmp_path / "thin.mp4", frames=3, width=16, height=1200, shift=0)
    uri = "data:video/mp4;base64," + base64.b64encode(thin.read_bytes()).decode()
    with httpx.Client(base_url=stack.url, headers={
            "Authorization": f"Key {key_for(stack)}"}, timeout=60) as client:
        record = wait_done(client, client.post("/v1/requests", json={"input": {
            "video_url": uri}}).json()["request_id"])
    assert record["status"] == "COMPLETED", record
    frames, facts = read_video(httpx.get(record["output"]["video"]["url"]).content)
    assert (len(frames), facts["width"], facts["height"]) == (3, 16, 1200)
    assert stack.procs["inference"].poll() is None, stack.log("inference")[-2000:]


def test_fal_client_subscribes_to_dwpose_video_through_the_proxy(stack, clip):
    node = shutil.which("node")
    assert node, "node is needed for the fal client test (see README)"
    run = subprocess.run(
        [node, str(ROOT / "tests" / "node" / "fal_video.mjs")], cwd=ROOT, timeout=300,
        capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "POSEHOOK_URL": stack.url, "FAL_KEY": key_for(stack),
             "VIDEO": str(clip), "FRAMES": str(FRAMES)})
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, run.stdout + run.stderr + stack.log("web")[-3000:]
    report = json.loads(lines[-1])
    outputs = report.pop("outputs")
    assert run.returncode == 0 and all(v == "ok" for v in report.values()), report
    assert set(report) == {"subscribe", "progress logs on the way", "video served as MP4",
                           "queue status", "queue result", "cancel after completion is 400",
                           "streaming subscribe", "sync run",
                           "not a video is a validation error"}
    for url in outputs.values():
        assert_pose_video(httpx.get(url).content)
