"""Run the pose engine for one request, store the picture (or the pose video), call our own
webhook like fal does.

A cancel is honoured at every step boundary (after the download, after the engine, before
storing; a video's after every frame): the job stops there, stores nothing and sends no
callback.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from rq.timeouts import JobTimeoutException

from app import fal_protocol, lifecycle
from app.errors import PosehookError
from app.models import Status
from app.services import Services, current
from app.signing import fal as fal_signing
from app.store import requests as store

log = logging.getLogger(__name__)

LOCAL_USER_ID = "posehook-local"
FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"),
           "jpeg": ("JPEG", "image/jpeg")}
MAX_SIDES = {"png": 65535, "webp": 16383, "jpeg": 65500}
"""The longest side each output format can hold (WebP's 14 bits, libjpeg's JPEG_MAX_DIMENSION;
PNG's is far larger, kept at JPEG's order so a picture stays one a viewer opens)."""


class Cancelled(Exception):
    """The request was cancelled while it ran: stop, store nothing."""


def encode(image: Any, output_format: str) -> tuple[bytes, str]:
    """Encode an RGB array; return (bytes, content type)."""
    from PIL import Image

    pil_format, content_type = FORMATS[output_format]
    buffer = io.BytesIO()
    options = {"quality": 95} if pil_format in ("JPEG", "WEBP") else {"optimize": False}
    Image.fromarray(image).save(buffer, format=pil_format, **options)
    return buffer.getvalue(), content_type


def _checkpoint(services: Services, request_id: str, step: str) -> None:
    """Stop here if the request was cancelled since the job started."""
    if lifecycle.is_cancelled(services, request_id):
        raise Cancelled(step)


def run_pose(services: Services, request_id: str, input: dict[str, Any],
             created_at: float | None = None) -> dict[str, Any]:
    """Load the input, run the engine, store the picture; return fal's output object.

    The picture is kept as long as the request record (``created_at`` + the request TTL).
    """
    from app.engine import output_size, render
    from app.images import decode_image, load_image_bytes
    from app.outbound import Guard

    settings = services.settings
    r = services.redis
    started = time.monotonic()
    data = load_image_bytes(input["image_url"], settings, Guard.from_settings(settings),
                            services.storage)
    image = decode_image(data, max_pixels=settings.max_pixels)
    store.add_log(r, request_id, f"image loaded: {image.shape[1]}x{image.shape[0]}")
    _checkpoint(services, request_id, "after the download")
    output_format = input.get("output_format") or "png"
    bounds = {"max_side": MAX_SIDES[output_format], "max_pixels": settings.max_pixels}
    rendering = render(services.engine, image, input, **bounds)
    people = len(rendering.keypoints.get("people", []))
    store.add_log(r, request_id, f"{rendering.engine} found {people} person(s)")
    asked = output_size(image.shape[1], image.shape[0], input.get("image_resolution"))
    height, width = rendering.image.shape[:2]
    if (width, height) != asked:
        store.add_log(r, request_id, f"pose image made {width}x{height}, not the {asked[0]}x"
                      f"{asked[1]} asked: {output_format} holds at most {bounds['max_side']} "
                      f"pixels a side, POSEHOOK_MAX_PIXELS is {settings.max_pixels}", "WARNING")
    _checkpoint(services, request_id, "after the engine")
    encoded, content_type = encode(rendering.image, output_format)
    _checkpoint(services, request_id, "before storing")
    stored = _keep(services, request_id, created_at, encoded, content_type,
                   f"pose.{output_format}")
    output: dict[str, Any] = {"image": {**stored, "width": width, "height": height}}
    if input.get("return_keypoints"):
        output["keypoints"] = rendering.keypoints
    elapsed = round(time.monotonic() - started, 3)
    store.update(r, request_id, engine=f"{rendering.engine}:{rendering.engine_version}",
                 metrics={"inference_time": elapsed})
    store.add_log(r, request_id, f"pose image stored ({stored['file_size']} bytes, {elapsed}s)")
    return output


def run_video(services: Services, request_id: str, input: dict[str, Any],
              created_at: float | None = None) -> dict[str, Any]:
    """Pose a video frame by frame (decode, engine, track and smooth, draw, encode); store
    the MP4 (and with ``return_keypoints`` the per-frame JSON); return the output object.

    Progress goes to the log and ``metrics.progress``; a cancel stops it at the next frame.
    """
    import tempfile

    from app.engine import render
    from app.engine.smoothing import OneEuroParams
    from app.engine.tracking import TrackedEngine, Tracker
    from app.images import load_image_bytes
    from app.outbound import Guard
    from app.video import CONTENT_TYPE, FIELD, Encoder, KeypointsWriter, byte_limit, decode_frames
    from app.video_pace import Pace, fraction

    settings, r = services.settings, services.redis
    started = time.monotonic()
    data = load_image_bytes(input["video_url"], settings, Guard.from_settings(settings),
                            services.storage, FIELD, byte_limit(settings))
    info, frames = decode_frames(data, settings)
    total = info.expected_frames  # 0: the header lists no length (a streamed WebM or MKV)
    store.add_log(r, request_id, f"video loaded: {info.width}x{info.height}, "
                                 f"{f'{total} frames' if total else 'no length listed'} at "
                                 f"{float(info.fps):.3g} fps ({info.codec}); audio dropped")
    options = {k: input[k] for k in ("draw_mode", "detect_resolution", "include_body",
                                     "include_hands", "include_face", "keypoints_format")
               if k in input}
    engine = TrackedEngine(services.engine, Tracker(float(info.fps), input.get(
        "smoothing") or "one_euro", OneEuroParams(**(input.get("smoothing_params") or {}))))
    with tempfile.TemporaryDirectory(prefix="posehook-video-") as folder:
        encoder = Encoder(f"{folder}/pose.mp4", info.width, info.height, info.fps)
        points = (KeypointsWriter(f"{folder}/keypoints.json", info.width, info.height, info.fps)
                  if input.get("return_keypoints") else None)
        pace = Pace(services, request_id, total, started)
        try:
            _checkpoint(services, request_id, "after the download")
            for frame in frames:
                rendering = render(engine, frame, options)
                encoder.write(rendering.image)
                if points is not None:
                    points.write(rendering.keypoints, engine.ids)
                _checkpoint(services, request_id, f"at frame {encoder.frames}")
                pace.after(encoder.frames)
            encoder.close()
        except BaseException:
            frames.close()
            encoder.abort()
            raise
        finally:
            if points is not None:
                points.close()
        _checkpoint(services, request_id, "before storing")
        output = {"video": _keep(services, request_id, created_at, _read(f"{folder}/pose.mp4"),
                                 CONTENT_TYPE, "pose.mp4")}
        if points is not None:
            output["keypoints_file"] = _keep(services, request_id, created_at,
                                             _read(f"{folder}/keypoints.json"),
                                             "application/json", "keypoints.json")
    done = encoder.frames
    output["video"].update(width=info.width, height=info.height, fps=round(float(info.fps), 6),
                           num_frames=done, duration=round(done / float(info.fps), 6))
    elapsed = round(time.monotonic() - started, 3)
    store.update(r, request_id, engine=f"{engine.name}:{engine.version}", metrics={
        "inference_time": elapsed, "progress": fraction(done, done)})
    store.add_log(r, request_id, f"pose video stored: {done} frames, "
                                 f"{output['video']['file_size']} bytes, {elapsed}s")
    return output


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _keep(services: Services, request_id: str, created_at: float | None, data: bytes,
          content_type: str, name: str) -> dict[str, Any]:
    """Store a finished file of a request for as long as its record (``created_at`` + the
    request TTL); return fal's File."""
    from app.retention import keep_for_request

    stored = services.storage.put(data, content_type, name)
    keep_for_request(services, stored, request_id,
                     time.time() if created_at is None else created_at)
    return {"url": stored.url, "content_type": content_type, "file_name": stored.file_name,
            "file_size": stored.file_size}


def error_of(exc: PosehookError) -> dict[str, Any]:
    """Return the error object a failed run reports: the caller's input, or the engine."""
    if exc.code in fal_protocol.INPUT_ERRORS:
        return {"type": "input_error", "message": exc.message,
                "field": exc.field or "input.image_url"}
    return {"type": exc.code, "message": exc.message}


def send_callback(services: Services, request_id: str, body: bytes) -> None:
    """POST a signed callback to our own ingress; raise so RQ retries when it is not taken."""
    headers = fal_signing.sign(services.signing_key, request_id, LOCAL_USER_ID, body)
    headers["Content-Type"] = "application/json"
    url = services.settings.callback_base_url + "/webhooks/fal"
    answer = services.callback_client.post(url, content=body, headers=headers)
    if answer.status_code != 200:
        raise RuntimeError(f"callback to {url} answered {answer.status_code}")


def _run(services: Services, record: Any) -> bytes | None:
    """Run a started request; return its callback body (None when it was cancelled)."""
    request_id = record.id
    r = services.redis
    try:
        run = run_video if "video_url" in record.input else run_pose
        output = run(services, request_id, record.input, record.created_at)
        return fal_protocol.callback_body(request_id, output)
    except Cancelled as stop:
        store.add_log(r, request_id, f"inference stopped {stop}: the request was cancelled")
        return None
    except PosehookError as exc:
        error = error_of(exc)
    except JobTimeoutException:
        seconds = (services.settings.video_job_timeout if "video_url" in record.input
                   else services.settings.job_timeout)
        error = {"type": "timeout",
                 "message": f"inference took longer than the limit of {seconds} s"}
    except Exception:  # noqa: BLE001 - a bug must fail the request, not the worker
        log.exception("inference failed for %s", request_id)
        error = {"type": "engine_error",
                 "message": "internal error while running the pose engine; it has been logged"}
    store.add_log(r, request_id, f"failed: {error['message']}", "ERROR")
    return fal_protocol.callback_body(request_id, None, error)


def infer(request_id: str) -> str:
    """Run one request: IN_QUEUE → IN_PROGRESS, engine, storage, callback (retried by RQ)."""
    svc = current()
    record = store.get(svc.redis, request_id)
    if record is None or record.status.is_terminal:
        return "skipped"
    if lifecycle.time_out(svc, record):
        return "timed out"  # its x-fal-request-timeout passed while it waited
    if not record.local_result:
        # Only the job that moves the request to IN_PROGRESS runs it; a request left
        # IN_PROGRESS by a dead worker is the sweeper's to retry when its lease runs out.
        attempt = record.attempts + 1
        lease = time.time() + svc.settings.job_timeout + svc.settings.lease_grace
        if record.status is not Status.IN_QUEUE or not lifecycle.start(
                svc, record, lease_until=lease, fields={"attempts": attempt},
                note=f"inference started (attempt {attempt})"):
            return "skipped"
        body = _run(svc, record)
        if body is None:
            return "cancelled"
        # Kept so a retry after a failed callback re-sends instead of re-running the model.
        store.update(svc.redis, request_id, local_result=body.decode())
    else:
        body = record.local_result.encode()
    send_callback(svc, request_id, body)
    return "called back"
