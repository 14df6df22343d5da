"""Videos in front of fal (POSEHOOK_PROVIDER=fal), against the stand-in fal speaking fal's
protocol: a native video request goes to fal-ai/dwpose/video and fal's video is copied here;
the proxy forwards fal-ai/dwpose/video's submits with the server's key."""

from __future__ import annotations

import base64

import httpx
import pytest

from app.models import Status
from app.store import requests as store
from tests.fal_standin import KEY
from tests.test_api_fal import call
from tests.test_fal_provider import wait_terminal
from tests.videos import make_video, read_video


@pytest.fixture
def overrides(overrides, fal):
    """posehook in front of the stand-in fal, forward mode included."""
    return {**overrides, "provider": "fal", "fal_key": KEY, "fal_queue_url": fal.url,
            "fal_forward_base_url": fal.url, "fal_jwks_url": fal.url + "/.well-known/jwks.json",
            "fal_jwks_min_refresh": 0.3, "reconcile_after": 1, "settle_tries": 3}


def test_a_video_request_runs_at_fal_ai_dwpose_video_and_fals_video_is_copied(
        http, services, run_jobs, fal, live, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=6, fps=6, width=64, height=48)
    uri = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    answer = http.post("/v1/requests", json={"input": {"video_url": uri, "draw_mode": "body-pose",
                                                       "smoothing": "off"}})
    assert answer.status_code == 202, answer.text
    record = wait_terminal(services, run_jobs, answer.json()["request_id"])
    assert record.status is Status.COMPLETED, record.error
    assert ("POST", "/fal-ai/dwpose/video") in fal.calls
    sent = fal.submits[0]["input"]
    assert set(sent) == {"video_url", "draw_mode"}  # fal's two fields, nothing of ours
    assert sent["video_url"].startswith("data:video/mp4;base64,")  # fal cannot reach our files
    video = record.output["video"]
    assert video["url"].startswith(live.url + "/files/")  # outlives fal's CDN
    copied = httpx.get(video["url"]).content
    assert copied == fal.result_video()
    assert (video["width"], video["height"], video["num_frames"], video["fps"]) == (64, 48, 6, 6)
    assert len(read_video(copied)[0]) == 6


def test_forward_mode_passes_fal_ai_dwpose_video_submits_on_with_the_servers_key(
        fal, live, api_key, services):
    answer = call(live, "https://queue.fal.run/fal-ai/dwpose/video", api_key,
                  json={"video_url": "https://example.com/walk.mp4"})
    assert answer.status_code == 200, answer.text
    assert fal.calls[-1] == ("POST", "/fal-ai/dwpose/video")
    assert fal.seen[-1]["Authorization"] == f"Key {KEY}"
    ours = store.find_by_provider_ref(services.redis, "fal", answer.json()["request_id"])
    assert store.get(services.redis, ours).input == {"video_url": "https://example.com/walk.mp4"}
