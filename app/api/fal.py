"""fal's server-side proxy protocol at ``/api/fal/proxy``, and fal-style storage uploads.

``@fal-ai/client`` with ``proxyUrl`` sends every call here with the real target in
``x-fal-target-url`` and the caller's credentials (a posehook key) as ``Key …``. In
local mode (default) we serve ``fal-ai/dwpose`` ourselves; with POSEHOOK_PROVIDER=fal
we forward our app's calls to fal with the server's FAL_KEY (``fal_forward.py``), never
the caller's key or cookies.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from app.api import fal_queue, json_body, services
from app.api.auth import authenticate
from app.api.fal_forward import TARGET_HEADER, forward
from app.errors import AuthError, NotFoundError, PosehookError, TooLargeError
from app.store.keys import key_for_upload_slot

bp = Blueprint("fal", __name__)

FAL_SUFFIXES = (".fal.run", ".fal.ai", ".fal.media")
FAL_HOSTS = ("fal.run", "fal.ai", "fal.media")
SYNC_WAIT = 60
UPLOAD_TTL = 3600


@bp.errorhandler(fal_queue.FalError)
def _fal_error(error: fal_queue.FalError):
    return fal_queue.fal_error_response(error.status, error.detail)


@bp.errorhandler(ValidationError)
def _validation(error: ValidationError):
    messages = error.messages if isinstance(error.messages, dict) else {"body": error.messages}
    detail = [{"loc": ["body", field], "msg": "; ".join(map(str, problems))
               if isinstance(problems, list) else str(problems), "type": "value_error"}
              for field, problems in messages.items()]
    return fal_queue.fal_error_response(422, detail)


@bp.errorhandler(PosehookError)
def _posehook(error: PosehookError):
    from app.api.errors import status_for

    return fal_queue.fal_error_response(status_for(error), error.message)


def is_fal_target(url: str) -> bool:
    """Return True for an https URL on one of fal's hosts (exact suffix match)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host in FAL_HOSTS or host.endswith(FAL_SUFFIXES))


@bp.route("/api/fal/proxy", methods=["GET", "POST", "PUT"])
def proxy():
    """Serve (local mode) or forward (fal mode) one call of @fal-ai/client."""
    target = request.headers.get(TARGET_HEADER, "")
    if not target:
        raise fal_queue.FalError(400, f"Missing the {TARGET_HEADER} header")
    if not is_fal_target(target):
        raise fal_queue.FalError(412, f"Invalid {TARGET_HEADER} header: not a fal URL")
    try:
        g.api_key = authenticate(proxy_tokens=True)
    except AuthError as exc:
        raise fal_queue.FalError(401, exc.message) from exc
    if services().settings.provider == "fal":
        return forward(target)
    return serve_locally(target)


def serve_locally(target: str) -> Response:
    """Route a fal URL to our own handlers for fal-ai/dwpose and storage."""
    parts = urlsplit(target)
    host = (parts.hostname or "").lower()
    path = [p for p in parts.path.split("/") if p]
    method = request.method
    logs = "logs=1" in (parts.query or "")
    if host == "rest.fal.ai" and path[:3] == ["storage", "upload", "initiate"]:
        return initiate_upload()
    app_id = "/".join(path[:2])
    if app_id != fal_queue.APP:
        raise fal_queue.FalError(404, f"Application '{app_id}' is not served here: this "
                                      f"posehook serves only {fal_queue.APP}")
    rest = path[2:]
    if host == "queue.fal.run":
        if not rest and method == "POST":
            webhook = dict(parse_qsl(parts.query)).get("fal_webhook", "")
            record = fal_queue.submit(json_body(), webhook)
            return fal_queue.submit_answer(record)
        if len(rest) >= 2 and rest[0] == "requests":
            request_id, tail = rest[1], rest[2:]
            if tail == ["status"] and method == "GET":
                return fal_queue.status(request_id, logs)
            if tail == ["status", "stream"] and method == "GET":
                return fal_queue.stream(request_id, logs)
            if tail == [] and method == "GET":
                return fal_queue.result(request_id)
            if tail == ["cancel"] and method == "PUT":
                return fal_queue.cancel(request_id)
    elif host == "fal.run" and not rest and method == "POST":
        return fal_queue.run(json_body(), SYNC_WAIT)
    raise fal_queue.FalError(404, f"{method} {parts.path} is not part of fal's queue protocol")


def initiate_upload() -> Response:
    """Answer ``{upload_url, file_url}``: a one-time PUT slot and the file's future URL."""
    body = json_body(optional=True) or {}
    content_type = str(body.get("content_type") or "application/octet-stream")[:100]
    storage = services().storage
    slot = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    services().redis.hset(key_for_upload_slot(slot), mapping={
        "key": key, "content_type": content_type, "key_id": g.api_key.id,
        "file_name": str(body.get("file_name") or "upload")[:200]})
    services().redis.expire(key_for_upload_slot(slot), UPLOAD_TTL)
    base = services().settings.public_base_url.rstrip("/")
    return jsonify({"upload_url": f"{base}/files/uploads/{slot}", "file_url": storage.url_for(key)})


@bp.put("/files/uploads/<slot>")
def upload(slot: str):
    """Take the bytes of an initiated upload (the slot in the URL is the permission)."""
    from app.images import sniff_image

    r = services().redis
    details = r.hgetall(key_for_upload_slot(slot)) if len(slot) < 64 else {}
    if not details or not r.delete(key_for_upload_slot(slot)):
        raise NotFoundError("No such upload slot (it was used already or has expired)")
    settings = services().settings
    data = request.get_data(cache=False)
    if len(data) > settings.max_upload_bytes:
        raise TooLargeError(f"file is larger than the limit of {settings.max_upload_bytes} bytes")
    content_type, _, _ = sniff_image(data, max_pixels=settings.max_pixels, field="file")
    services().storage.put(data, content_type, details["file_name"], key=details["key"])
    return jsonify({"ok": True})
