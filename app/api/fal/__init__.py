"""fal's server-side proxy protocol at ``/api/fal/proxy``, and fal-style storage uploads.

``@fal-ai/client`` with ``proxyUrl`` sends every call here with the real target in
``x-fal-target-url`` and the caller's credentials (a posehook key) as ``Key …``. In
local mode (default) we serve ``fal-ai/dwpose`` ourselves; with POSEHOOK_PROVIDER=fal
we forward our app's calls to fal with the server's FAL_KEY (``fal_forward.py``), never
the caller's key or cookies.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from app.api import authenticate, json_body, services
from app.api.fal import queue as fal_queue
from app.api.fal.forward import TARGET_HEADER, forward
from app.errors import AuthError, NotFoundError, PosehookError, TooLargeError, TooManyRequestsError
from app.fal_protocol import APP, FalError, parse_target
from app.store import uploads

bp = Blueprint("fal", __name__)

FAL_SUFFIXES = (".fal.run", ".fal.ai", ".fal.media")
FAL_HOSTS = ("fal.run", "fal.ai", "fal.media")
SYNC_WAIT = 60
UPLOAD_TTL = 3600


@bp.errorhandler(FalError)
def _fal_error(error: FalError):
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
    response = fal_queue.fal_error_response(error.http_status, error.message)
    if isinstance(error, TooManyRequestsError):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


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
        raise FalError(400, f"Missing the {TARGET_HEADER} header")
    if not is_fal_target(target):
        raise FalError(412, f"Invalid {TARGET_HEADER} header: not a fal URL")
    try:
        g.api_key = authenticate(proxy_tokens=True)
    except AuthError as exc:
        raise FalError(401, exc.message) from exc
    if services().settings.provider == "fal":
        return forward(target)
    return serve_locally(target)


def serve_locally(target_url: str) -> Response:
    """Route a fal URL to our own handlers for fal-ai/dwpose and storage."""
    method = request.method
    target = parse_target(target_url, method)
    logs = target.query.get("logs", "").lower() in ("1", "true")
    if target.kind == "upload":
        return initiate_upload()
    if target.kind == "submit":
        webhook = target.query.get("fal_webhook", "")
        record = fal_queue.submit(json_body(), webhook)
        return fal_queue.submit_answer(record)
    if target.kind == "run":
        return fal_queue.run(json_body(), SYNC_WAIT)
    if target.kind == "request":
        handler = {(): fal_queue.result, ("cancel",): fal_queue.cancel}.get(target.call)
        if handler is not None:
            return handler(target.request_id)
        return (fal_queue.status if target.call == ("status",) else fal_queue.stream)(
            target.request_id, logs)
    if target.app != APP:
        raise FalError(404, f"Application '{target.app}' is not served here: this "
                            f"posehook serves only {APP}")
    raise FalError(404, f"{method} {target.path} is not part of fal's queue protocol")


def initiate_upload() -> Response:
    """Answer ``{upload_url, file_url}``: a one-time PUT slot and the file's future URL."""
    body = json_body(optional=True) or {}
    content_type = str(body.get("content_type") or "application/octet-stream")[:100]
    storage = services().storage
    slot = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    uploads.open_slot(services().redis, slot, {
        "key": key, "content_type": content_type, "key_id": g.api_key.id,
        "file_name": str(body.get("file_name") or "upload")[:200]}, UPLOAD_TTL)
    base = services().settings.public_base_url.rstrip("/")
    return jsonify({"upload_url": f"{base}/files/uploads/{slot}", "file_url": storage.url_for(key)})


@bp.put("/files/uploads/<slot>")
def upload(slot: str):
    """Take the bytes of an initiated upload (the slot in the URL is the permission)."""
    from app.images import sniff_image
    from app.retention import keep_upload

    details = uploads.take(services().redis, slot)
    if details is None:
        raise NotFoundError("No such upload slot (it was used already or has expired)")
    settings = services().settings
    data = request.get_data(cache=False)
    if len(data) > settings.max_upload_bytes:
        raise TooLargeError(f"file is larger than the limit of {settings.max_upload_bytes} bytes")
    content_type, _, _ = sniff_image(data, max_pixels=settings.max_pixels, field="file")
    stored = services().storage.put(data, content_type, details["file_name"], key=details["key"])
    keep_upload(services(), stored)
    return jsonify({"ok": True})
