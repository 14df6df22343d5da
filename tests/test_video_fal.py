"""fal-ai/dwpose/video on the fal-hosts listener, with the unmodified PyPI fal-client."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import httpx

from app import devcert
from tests.test_fal_hosts import fal_hosts  # noqa: F401 - the listener fixture
from tests.test_video import lit_centre
from tests.videos import HEIGHT, WIDTH, make_video, read_video

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
