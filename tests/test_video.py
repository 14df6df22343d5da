"""Videos through the native API, in process: a clip in, a pose MP4 of the same frames out.

The clips are the sample photo walking right across a grey canvas (tests/videos.py),
encoded with PyAV; the inference runs in the real job with the real engine.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.store import requests as store
from tests import sinks
from tests.contract import check, check_schema
from tests.videos import HEIGHT, WIDTH, make_video, read_video, streamed_video


@pytest.fixture
def overrides(overrides):
    """Small video limits, so a short clip can be over them."""
    return {**overrides, "video_max_frames": 40, "video_max_seconds": 10}


def data_uri(path: Path) -> str:
    return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def lit_centre(frame: np.ndarray) -> float:
    """Return the mean x of the drawn (non-black) pixels of a pose frame."""
    return float(np.argwhere(frame.max(axis=2) > 40)[:, 1].mean())


def test_a_clip_comes_back_as_a_pose_video_of_the_same_frames_size_and_rate(
        http, run_jobs, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=16, fps=12, shift=120, audio=True)
    answer = http.post("/v1/requests", json={"input": {
        "video_url": data_uri(clip), "return_keypoints": True}})
    assert answer.status_code == 202, answer.text
    check(answer, "POST", "/v1/requests")
    request_id = answer.json()["request_id"]
    run_jobs()
    record = http.get(f"/v1/requests/{request_id}")
    check(record, "GET", "/v1/requests/{request_id}")
    body = record.json()
    assert body["status"] == "COMPLETED", body
    video = body["output"]["video"]
    assert video["content_type"] == "video/mp4"
    assert (video["width"], video["height"], video["num_frames"]) == (WIDTH, HEIGHT, 16)
    assert body["metrics"]["progress"] == {"frames_done": 16, "frames_total": 16,
                                           "fraction": 1.0}
    mp4 = httpx.get(video["url"]).content
    assert len(mp4) == video["file_size"] and mp4[4:8] == b"ftyp"
    frames, facts = read_video(mp4)
    assert len(frames) == facts["frames"] == 16
    assert (facts["width"], facts["height"], facts["rate"]) == (WIDTH, HEIGHT, 12)
    assert facts["codec"] == "h264" and facts["audio"] == 0  # H.264, audio dropped
    # The skeleton walks with her: drawn pixels move right by about the shift.
    assert 80 < lit_centre(frames[-1]) - lit_centre(frames[0]) < 160
    points = json.loads(httpx.get(body["output"]["keypoints_file"]["url"]).content)
    assert (points["width"], points["height"], len(points["frames"])) == (WIDTH, HEIGHT, 16)
    ids = {p["person_id"] for f in points["frames"] for p in f["people"]}
    assert ids == {1}  # one person, one id all through
    necks = [f["people"][0]["pose_keypoints_2d"][3] for f in points["frames"]]
    assert all(b > a - 2 for a, b in zip(necks, necks[1:], strict=False))  # she only goes right
    assert 80 < necks[-1] - necks[0] < 160
    logs = [line["message"] for line in http.get(
        f"/v1/requests/{request_id}/status", params={"logs": 1}).json()["logs"]]
    assert any(m.startswith("video loaded: 320x240, 16 frames at 12 fps") for m in logs)
    assert "posed 16 of 16 frames" in logs and any(m.startswith("pose video stored") for m in logs)


@pytest.mark.parametrize("payload, limit", [
    ("frames", "POSEHOOK_VIDEO_MAX_FRAMES"), ("text", "not a video"), ("image", "not a video"),
    ("cut", "not a video"), ("thin", "the video is 4x2100, thinner than the limit of 512:1")])
def test_a_video_refused_at_submit_is_422_naming_the_limit_or_the_problem(
        http, tmp_path, sample_bytes, payload, limit):
    if payload == "frames":
        uri = data_uri(make_video(tmp_path / "long.mp4", frames=45, width=64, height=48))
    elif payload == "thin":  # no engine finds anyone in a picture thinner than 512:1
        uri = data_uri(make_video(tmp_path / "thin.mp4", frames=3, width=4, height=2100))
    elif payload == "text":
        uri = "data:video/mp4;base64," + base64.b64encode(b"just some text\n" * 50).decode()
    elif payload == "image":
        uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
    else:  # the first half of a file whose index comes last: no moov, nothing to read
        clip = make_video(tmp_path / "plain.mp4", frames=12, container="mov").read_bytes()
        uri = "data:video/mp4;base64," + base64.b64encode(clip[: len(clip) // 2]).decode()
    answer = http.post("/v1/requests", json={"input": {"video_url": uri}})
    assert answer.status_code == 422, answer.text
    check(answer, "POST", "/v1/requests")
    assert answer.json()["errors"] == {"input.video_url": [answer.json()["message"]]} or \
        "input.video_url" in answer.json()["message"]
    assert limit in answer.json()["message"]


def test_a_truncated_or_non_video_download_fails_the_request_with_the_reason(
        http, run_jobs, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=24).read_bytes()
    thin = make_video(tmp_path / "thin.mp4", frames=3, width=2100, height=4).read_bytes()
    served = [sinks.serve_photo(clip[: len(clip) * 2 // 3]), sinks.serve_photo(b"<html>" * 99),
              sinks.serve_photo(thin)]
    try:
        ids = [http.post("/v1/requests", json={"input": {"video_url": url}}).json()["request_id"]
               for _, url in served]
        run_jobs()
    finally:
        for server, _ in served:
            server.shutdown()
    truncated, html, too_thin = (http.get(f"/v1/requests/{i}").json() for i in ids)
    assert too_thin["status"] == "FAILED" and too_thin["error"]["type"] == "input_error"
    assert "2100x4, thinner than the limit of 512:1" in too_thin["error"]["message"]
    assert truncated["status"] == "FAILED" and truncated["error"]["type"] == "input_error"
    assert truncated["error"]["message"].startswith("input.video_url: the ")
    assert "truncated" in truncated["error"]["message"]
    assert html["status"] == "FAILED" and html["error"]["type"] == "input_error"
    assert "not a video we can read" in html["error"]["message"]


def test_a_cancel_mid_video_stops_at_the_next_frame_and_stores_nothing(
        http, run_jobs, services, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=40, fps=10, width=160, height=120)
    request_id = http.post("/v1/requests", json={"input": {
        "video_url": data_uri(clip), "return_keypoints": True}}).json()["request_id"]
    seen: dict = {}

    def cancel_when_two_frames_are_done() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            progress = http.get(f"/v1/requests/{request_id}/status").json()["metrics"].get(
                "progress")
            if progress and progress["frames_done"] >= 2:
                seen["at"] = progress["frames_done"]
                seen["answer"] = http.put(f"/v1/requests/{request_id}/cancel").status_code
                return
            time.sleep(0.02)

    canceller = threading.Thread(target=cancel_when_two_frames_are_done)
    canceller.start()
    files = Path(services.storage.root)  # the local directory (the default storage)
    files_before = set(files.rglob("*"))
    run_jobs()
    canceller.join()
    record = http.get(f"/v1/requests/{request_id}").json()
    assert seen["answer"] == 202 and record["status"] == "CANCELLED"
    assert record["output"] is None
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    stopped = [m for m in logs if m.startswith("inference stopped at frame")]
    assert stopped, logs
    assert int(stopped[0].split()[4].rstrip(":")) < 40  # it did not run to the end
    assert set(files.rglob("*")) == files_before  # no video, no JSON


def test_a_video_job_may_run_as_long_as_the_longest_video_allowed(services):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from app import queues

    settings = services.settings
    assert settings.video_job_timeout == settings.job_timeout + 40 * 1  # 40 frames x 1 s
    for video, limit in ((True, settings.video_job_timeout), (False, settings.job_timeout)):
        job_id = queues.enqueue_infer(services.rq, settings, f"r{video}", 1, video=video)
        assert Job.fetch(job_id, connection=services.rq,
                         serializer=JSONSerializer).timeout == limit


def test_request_progress_goes_once_a_second_at_most_to_those_who_name_it(
        http, run_jobs, tmp_path):
    from datetime import datetime

    named, wildcard = sinks.Sink().start(), sinks.Sink().start()
    try:
        for sink, events in ((named, ["request.progress", "request.completed"]),
                             (wildcard, ["*"])):
            answer = http.post("/v1/subscriptions", json={"url": sink.url, "events": events})
            assert answer.status_code == 201, answer.text
            check(answer, "POST", "/v1/subscriptions")
        clip = make_video(tmp_path / "walk.mp4", frames=24, fps=12)
        request_id = http.post("/v1/requests", json={"input": {
            "video_url": data_uri(clip)}}).json()["request_id"]
        run_jobs()
        run_jobs()
    finally:
        named.stop()
        wildcard.stop()
    sent = [json.loads(got.body) for got in named.received]
    progress = [event for event in sent if event["type"] == "request.progress"]
    assert [event["type"] for event in sent][-1] == "request.completed"
    assert progress and all(e["data"]["request_id"] == request_id and
                            e["data"]["status"] == "IN_PROGRESS" for e in progress)
    done = [e["data"]["progress"]["frames_done"] for e in progress]
    assert done == sorted(done) and len(set(done)) == len(done)
    sequences = [e["data"]["sequence"] for e in sent]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    ids = [got.headers["webhook-id"] for got in named.received]
    assert len(set(ids)) == len(ids)  # each progress event is its own message
    times = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
             for e in progress]
    assert all(b - a >= 0.99 for a, b in zip(times, times[1:], strict=False))
    assert "request.progress" not in {json.loads(g.body)["type"] for g in wildcard.received}


def test_a_video_uploaded_to_v1_files_is_a_video_url_and_text_is_refused_naming_both(
        http, run_jobs, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=6, fps=6)
    upload = http.post("/v1/files", content=clip.read_bytes(), params={"file_name": "walk.mp4"},
                       headers={"Content-Type": "video/mp4"})
    assert upload.status_code == 201, upload.text
    check(upload, "POST", "/v1/files")
    assert (upload.json()["content_type"], upload.json()["width"], upload.json()["height"]) == (
        "video/mp4", WIDTH, HEIGHT)
    request_id = http.post("/v1/requests", json={"input": {
        "video_url": upload.json()["url"]}}).json()["request_id"]
    run_jobs()
    record = http.get(f"/v1/requests/{request_id}").json()
    assert record["status"] == "COMPLETED" and record["output"]["video"]["num_frames"] == 6
    text = http.post("/v1/files", content=b"hello\n" * 40, headers={"Content-Type": "text/plain"})
    assert text.status_code == 422 and text.json()["errors"] == {"file": [text.json()["message"]]}
    assert "nor is it a video" in text.json()["message"]


def test_each_progress_update_keeps_the_lease_for_one_more_job_timeout(services):
    from app.store import tracking
    from app.video_pace import progress

    record, _ = store.create(services.redis, key_id="k", provider="local",
                             input={"video_url": "https://example.com/v.mp4"})
    before = time.time()
    progress(services, record.id, 3, 30, False)
    held = services.settings.job_timeout + services.settings.lease_grace
    assert record.id not in tracking.expired_leases(services.redis, before + held - 1)
    assert record.id in tracking.expired_leases(services.redis, time.time() + held + 1)
    assert store.get(services.redis, record.id).metrics["progress"]["frames_done"] == 3


def test_progress_is_announced_only_while_a_request_runs(http, services, tmp_path):
    from app import events
    from app.models import PROGRESS_EVENT

    sink = sinks.Sink().start()
    try:
        answer = http.post("/v1/subscriptions", json={"url": sink.url,
                                                      "events": ["request.progress"]})
        assert answer.status_code == 201, answer.text
        clip = make_video(tmp_path / "walk.mp4", frames=6, fps=6, width=160, height=120)
        request_id = http.post("/v1/requests", json={"input": {
            "video_url": data_uri(clip)}}).json()["request_id"]
        before = store.get(services.redis, request_id).event_seq
        assert events.emit(services, request_id, PROGRESS_EVENT) == []  # queued, not running
        assert http.put(f"/v1/requests/{request_id}/cancel").status_code == 202
        ended = store.get(services.redis, request_id).event_seq
        # A progress report racing the cancel (the frame was being drawn) goes nowhere and
        # takes no sequence number after the request's last event.
        assert events.emit(services, request_id, PROGRESS_EVENT) == []
        assert store.get(services.redis, request_id).event_seq == ended == before + 1
    finally:
        sink.stop()


def test_a_videos_keypoints_file_takes_the_coco_wholebody_layout(http, run_jobs, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", frames=6, fps=6, shift=60)
    answer = http.post("/v1/requests", json={"input": {
        "video_url": data_uri(clip), "return_keypoints": True,
        "keypoints_format": "coco_wholebody"}})
    assert answer.status_code == 202, answer.text
    check(answer, "POST", "/v1/requests")
    run_jobs()
    body = http.get(f"/v1/requests/{answer.json()['request_id']}").json()
    assert body["status"] == "COMPLETED", body
    points = json.loads(httpx.get(body["output"]["keypoints_file"]["url"]).content)
    people = [p for f in points["frames"] for p in f["people"]]
    assert len(people) == 6 and {p["person_id"] for p in people} == {1}
    assert all(len(p["keypoints"]) == 133 * 3 and "pose_keypoints_2d" not in p
               for p in people)
    # COCO's nose (point 0) moves right with her, as OpenPose's neck does above.
    noses = [p["keypoints"][0] for p in people]
    assert 20 < noses[-1] - noses[0] < 90
    bad = http.post("/v1/requests", json={"input": {"video_url": data_uri(clip),
                                                    "keypoints_format": "coco"}})
    assert bad.status_code == 422 and "keypoints_format" in bad.text


def webm_uri(data: bytes) -> str:
    return "data:video/webm;base64," + base64.b64encode(data).decode()


def test_a_streamed_video_shows_no_total_while_it_runs_and_no_log_line_per_frame(
        http, run_jobs, services):
    """A WebM written as a stream (MediaRecorder) lists no length: its progress has no total
    (not "1 frame", not "as many as done") until it ends, and it logs on a clock, not at
    every frame as "every tenth of 1 frame" did."""
    sink = sinks.Sink().start()
    try:
        answer = http.post("/v1/subscriptions", json={"url": sink.url,
                                                      "events": ["request.progress"]})
        assert answer.status_code == 201, answer.text
        answer = http.post("/v1/requests", json={"input": {
            "video_url": webm_uri(streamed_video(frames=12, fps=4))}})
        assert answer.status_code == 202, answer.text
        request_id = answer.json()["request_id"]
        run_jobs()
        run_jobs()
    finally:
        sink.stop()
    record = http.get(f"/v1/requests/{request_id}")
    check(record, "GET", "/v1/requests/{request_id}")
    body = record.json()
    assert body["status"] == "COMPLETED" and body["output"]["video"]["num_frames"] == 12
    assert body["metrics"]["progress"] == {"frames_done": 12, "frames_total": 12,
                                           "fraction": 1.0}
    shown = [json.loads(got.body)["data"]["progress"] for got in sink.received]
    assert shown and all(p["frames_total"] is None and p["fraction"] is None for p in shown)
    for progress in shown:
        check_schema(progress, "Progress")
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert any(m.startswith("video loaded: 64x48, no length listed at 4 fps") for m in logs)
    assert not [m for m in logs if m.startswith("posed") and " of " in m], logs


def test_a_streamed_video_longer_than_the_limit_fails_naming_it(http, run_jobs):
    """Its header lists no length, so the submit takes it; the frames' times do not."""
    answer = http.post("/v1/requests", json={"input": {
        "video_url": webm_uri(streamed_video(frames=30, fps=2))}})  # 15 s, the limit is 10
    assert answer.status_code == 202, answer.text
    run_jobs()
    body = http.get(f"/v1/requests/{answer.json()['request_id']}").json()
    assert body["status"] == "FAILED" and body["error"]["type"] == "input_error"
    assert body["error"]["field"] == "input.video_url"
    assert "longer than the limit of 10 s (POSEHOOK_VIDEO_MAX_SECONDS)" in body["error"]["message"]
    assert body["output"] is None


def test_a_video_may_take_the_job_timeout_and_a_frame_time_per_frame_listed_or_seen(services):
    """The time limit counts the header's frames or, when it lists none, the frames seen so
    far (not one frame): a job started job_timeout + 5 frame times ago is within it at its
    10th frame and over it at its 3rd."""
    from app.video_pace import Pace, VideoTimeLimitError

    settings = services.settings
    record, _ = store.create(services.redis, key_id="k", provider="local",
                             input={"video_url": "https://example.com/v.webm"})
    started = time.monotonic() - settings.job_timeout - 5 * settings.video_frame_seconds
    Pace(services, record.id, 0, started).after(10)  # no length listed, 10 frames seen
    Pace(services, record.id, 40, started).after(3)  # 40 listed
    with pytest.raises(VideoTimeLimitError, match=r"POSEHOOK_JOB_TIMEOUT \+ 3 frames x "):
        Pace(services, record.id, 0, started).after(3)
    assert store.get(services.redis, record.id).metrics["progress"] == {
        "frames_done": 3, "frames_total": None, "fraction": None}


@pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)
def test_a_data_uri_video_is_stored_as_its_bytes_say_and_a_broken_type_is_refused(
        http, services, tmp_path, storage_kind):
    """The URI's media type is the caller's word: one no header can carry (CR/LF, spaces,
    non-ASCII) is a 422 naming it, and the stored file takes its container's type."""
    clip = make_video(tmp_path / "walk.mkv", frames=4, width=64, height=48,
                      container="matroska").read_bytes()
    data = base64.b64encode(clip).decode()
    for declared in ("video/mp4\r\nX-Evil: 1", "video/mp4\u00e9", "video/mp4 x"):
        answer = http.post("/v1/requests", json={"input": {
            "video_url": f"data:{declared};base64,{data}"}})
        assert answer.status_code == 422, answer.text
        check(answer, "POST", "/v1/requests")
        assert "input.video_url: the data URI's media type" in answer.json()["message"]
    answer = http.post("/v1/requests", json={"input": {
        "video_url": f"data:application/octet-stream;base64,{data}"}})
    assert answer.status_code == 202, answer.text
    stored = store.get(services.redis, answer.json()["request_id"]).input["video_url"]
    served = httpx.get(stored)
    assert served.status_code == 200 and served.content == clip
    assert served.headers["Content-Type"] == "video/x-matroska"


def test_a_video_over_its_byte_limit_is_refused_naming_the_limit_whatever_the_way_in(
        http, services, live, api_key, tmp_path):
    """Sent in the body, uploaded and named by URL, or as a file of ours: a 413 that names
    the video and POSEHOOK_VIDEO_MAX_BYTES, at submit."""
    from tests.test_fal_storage import upload as fal_upload

    clip = make_video(tmp_path / "c.mp4", frames=4, width=64, height=48).read_bytes()
    url = fal_upload(live, api_key, clip, "video/mp4", "c.mp4")  # under the limit now
    services.settings = services.settings.replace(video_max_bytes=len(clip) - 1)
    sent = "data:video/mp4;base64," + base64.b64encode(clip).decode()
    for video_url in (sent, url):
        answer = http.post("/v1/requests", json={"input": {"video_url": video_url}})
        assert answer.status_code == 413, answer.text
        check(answer, "POST", "/v1/requests")
        assert re.search(rf"input.video_url: the (video|file) is {len(clip)} bytes, more than "
                         rf"the limit of {len(clip) - 1} \(POSEHOOK_VIDEO_MAX_BYTES\)",
                         answer.json()["message"]), answer.text
