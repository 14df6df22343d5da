"""Run the pose engine for one request, store the picture, call our own webhook like fal does."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import httpx
from rq.timeouts import JobTimeoutException

from app.errors import PosehookError
from app.models import Status
from app.services import Services, current
from app.signing import fal as fal_signing
from app.store import requests as store
from app.store.keys import key_for_request

log = logging.getLogger(__name__)

LOCAL_USER_ID = "posehook-local"
FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"),
           "jpeg": ("JPEG", "image/jpeg")}

_engines: dict[tuple[str, str], Any] = {}


def engine_for(services: Services) -> Any:
    """Return this process's engine, loaded once (the inference worker preloads it)."""
    from app.engine import load_engine

    settings = services.settings
    key = (settings.engine, settings.dwpose_model_dir)
    if key not in _engines:
        _engines[key] = load_engine(settings.engine, settings.dwpose_model_dir or None)
    return _engines[key]


def encode(image: Any, output_format: str) -> tuple[bytes, str]:
    """Encode an RGB array; return (bytes, content type)."""
    from PIL import Image

    pil_format, content_type = FORMATS[output_format]
    buffer = io.BytesIO()
    options = {"quality": 95} if pil_format in ("JPEG", "WEBP") else {"optimize": False}
    Image.fromarray(image).save(buffer, format=pil_format, **options)
    return buffer.getvalue(), content_type


def run_pose(services: Services, request_id: str, input: dict[str, Any]) -> dict[str, Any]:
    """Load the input, run the engine, store the picture; return fal's output object."""
    from app.engine import render
    from app.images import decode_image, load_image_bytes
    from app.outbound import Guard

    settings = services.settings
    r = services.redis
    started = time.monotonic()
    data = load_image_bytes(input["image_url"], settings, Guard.from_settings(settings),
                            services.storage)
    image = decode_image(data, max_pixels=settings.max_pixels)
    store.add_log(r, request_id, f"image loaded: {image.shape[1]}x{image.shape[0]}")
    engine = engine_for(services)
    rendering = render(engine, image, input)
    people = len(rendering.keypoints.get("people", []))
    store.add_log(r, request_id, f"{rendering.engine} found {people} person(s)")
    output_format = input.get("output_format") or "png"
    encoded, content_type = encode(rendering.image, output_format)
    stored = services.storage.put(encoded, content_type, f"pose.{output_format}")
    height, width = rendering.image.shape[:2]
    output: dict[str, Any] = {"image": {
        "url": stored.url, "content_type": content_type, "file_name": stored.file_name,
        "file_size": stored.file_size, "width": width, "height": height}}
    if input.get("return_keypoints"):
        output["keypoints"] = rendering.keypoints
    elapsed = round(time.monotonic() - started, 3)
    store.update(r, request_id, engine=f"{rendering.engine}:{rendering.engine_version}",
                 metrics={"inference_time": elapsed})
    store.add_log(r, request_id, f"pose image stored ({stored.file_size} bytes, {elapsed}s)")
    return output


def callback_body(request_id: str, output: dict[str, Any] | None, error: str = "") -> bytes:
    """Return a callback body in fal's webhook format."""
    if output is not None:
        body: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id,
                                "status": "OK", "payload": output}
    else:
        body = {"request_id": request_id, "gateway_request_id": request_id, "status": "ERROR",
                "error": error, "payload": {"detail": [{"msg": error, "type": "inference_error"}]}}
    return json.dumps(body, separators=(",", ":")).encode()


def send_callback(services: Services, request_id: str, body: bytes) -> None:
    """POST a signed callback to our own ingress; raise so RQ retries when it is not taken."""
    headers = fal_signing.sign(services.signing_key, request_id, LOCAL_USER_ID, body)
    headers["Content-Type"] = "application/json"
    url = services.settings.callback_base_url + "/webhooks/fal"
    answer = httpx.post(url, content=body, headers=headers, timeout=15)
    if answer.status_code != 200:
        raise RuntimeError(f"callback to {url} answered {answer.status_code}")


def infer(request_id: str) -> str:
    """Run one request: IN_QUEUE → IN_PROGRESS, engine, storage, callback (retried by RQ)."""
    svc = current()
    r = svc.redis
    record = store.get(r, request_id)
    if record is None or record.status.is_terminal:
        return "skipped"
    pending = r.hget(key_for_request(request_id), "local_result")
    if pending is None:
        # Only the job that moves the request to IN_PROGRESS runs it; a request left
        # IN_PROGRESS by a dead worker is the sweeper's to retry when its lease runs out.
        lease = time.time() + svc.settings.job_timeout + svc.settings.lease_grace
        if record.status is not Status.IN_QUEUE or not store.transition(
                r, request_id, (Status.IN_QUEUE,), Status.IN_PROGRESS,
                {"started_at": repr(time.time()), "attempts": str(record.attempts + 1)},
                lease_until=lease):
            return "skipped"
        from jobs.settle import announce

        announce(request_id, "request.started")
        store.add_log(r, request_id, f"inference started (attempt {record.attempts + 1})")
        try:
            body = callback_body(request_id, run_pose(svc, request_id, record.input))
        except PosehookError as exc:
            store.add_log(r, request_id, f"failed: {exc.message}", "ERROR")
            body = callback_body(request_id, None, exc.message)
        except JobTimeoutException:
            message = f"inference took longer than the limit of {svc.settings.job_timeout} s"
            store.add_log(r, request_id, message, "ERROR")
            body = callback_body(request_id, None, message)
        except Exception:  # noqa: BLE001 - a bug must fail the request, not the worker
            log.exception("inference failed for %s", request_id)
            message = "internal error while running the pose engine; it has been logged"
            store.add_log(r, request_id, message, "ERROR")
            body = callback_body(request_id, None, message)
        # Kept so a retry after a failed callback re-sends instead of re-running the model.
        store.update(r, request_id, local_result=body.decode())
    else:
        body = pending.encode()
    send_callback(svc, request_id, body)
    return "called back"
