"""fal-ai/dwpose/video through fal's surface: on the fal-hosts listener with the unmodified
PyPI fal-client, and a sync run through the proxy."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import httpx
import pytest

from app import devcert
from app.models import Status
from app.store import requests as store
from tests.test_api_fal import call
from tests.test_fal_hosts import fal_hosts  # noqa: F401 - the listener fixture
from tests.test_video import lit_centre
from tests.videos import HEIGHT, WIDTH, make_video, read_video


@pytest.fixture
def overrides(overrides):
    """A sync run waits a second, not a minute, before it gives up."""
    return {**overrides, "fal_sync_wait": 1}


CLIENT = """
import json, os, fal_client
updates = []
result = fal_client.subscribe("fal-ai/dwpose/video", {"video_url": os.environ["VIDEO_URI"]},
                              with_logs=True, on_queue_update=updates.append)
logs = [line["message"] for u in updates for line in (getattr(u, "logs", None) or [])]
try:
    fal_client.subscribe("fal-ai/dwpose/video", {"draw_mode": "full-pose"})
    refused = None
except Exception as exc:
    refused = [type(exc).__name__, getattr(exc, "status_code", None) or
               getattr(getattr(exc, "response", None), "status_code", None)]
print(json.dumps({"video": result["video"], "logs": logs, "refused": refused}))
"""


def test_the_python_fal_client_gets_a_pose_video_from_the_hosts_listener(
        fal_hosts, api_key, run_jobs, tmp_path):  # noqa: F811 - the fixture imported above
    clip = make_video(tmp_path / "walk.mp4", frames=8, fps=8, shift=80)
    env = {"PATH": "/usr/bin:/bin", "FAL_KEY": api_key, "HOME": str(tmp_path),
           "VIDEO_URI": "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode(),
           **devcert.client_env(fal_hosts.bind, fal_hosts.paths)}
    proc = subprocess.Popen([sys.executable, "-c", CLIENT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        run_jobs()
        time.sleep(0.05)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    answer = json.loads(out.strip().splitlines()[-1])
    video = answer["video"]
    assert video["content_type"] == "video/mp4" and video["num_frames"] == 8
    frames, facts = read_video(httpx.get(video["url"]).content)
    assert (len(frames), facts["width"], facts["height"], facts["rate"]) == (8, WIDTH, HEIGHT, 8)
    assert lit_centre(frames[-1]) - lit_centre(frames[0]) > 40
    assert "posed 8 of 8 frames" in answer["logs"]
    assert answer["refused"][1] == 422  # no video_url: fal's validation error


def test_a_sync_run_that_does_not_finish_in_time_is_cancelled_and_answered_with_its_id(
        live, api_key, services, run_jobs, tmp_path):
    """fal.run's result goes only to its connection: a run we stop waiting for is cancelled
    (nobody could collect it, and fal's JS client would send it again beside it), and the
    504 names it (x-fal-request-id, as fal's clients read it, and in the body)."""
    clip = make_video(tmp_path / "walk.mp4", frames=4, width=64, height=48)
    uri = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    answer = call(live, "https://fal.run/fal-ai/dwpose/video", api_key, json={"video_url": uri},
                  timeout=30)  # no worker runs while it waits
    assert answer.status_code == 504, answer.text
    request_id = answer.headers["x-fal-request-id"]
    assert answer.json()["request_id"] == request_id
    assert answer.json()["error_type"] == answer.headers["X-Fal-Error-Type"] == "request_timeout"
    assert "x-fal-request-timeout-type" not in answer.headers  # not the caller's own limit
    assert "did not finish within 1 s, so it was cancelled" in answer.json()["detail"]
    assert store.get(services.redis, request_id).status is Status.CANCELLED
    run_jobs()  # the worker comes by later: nothing runs
    record = store.get(services.redis, request_id)
    assert record.status is Status.CANCELLED and record.output is None
    status = call(live, f"https://queue.fal.run/fal-ai/dwpose/requests/{request_id}/status",
                  api_key, method="GET")
    assert status.status_code == 200 and status.json()["status"] == "COMPLETED"
