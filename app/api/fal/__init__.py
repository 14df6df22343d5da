"""fal's server-side proxy protocol at ``/api/fal/proxy``, and fal-style storage uploads.

``@fal-ai/client`` with ``proxyUrl`` sends every call here with the real target in
``x-fal-target-url`` and the caller's credentials (a posehook key) as ``Key …``. In
local mode (default) we serve ``fal-ai/dwpose`` ourselves; with POSEHOOK_PROVIDER=fal
we forward our app's calls to fal with the server's FAL_KEY (``fal_forward.py``), never
the caller's key or cookies.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from app.api import authenticate, json_body, services
from app.api.fal import queue as fal_queue
from app.api.fal.forward import TARGET_HEADER, forward
from app.errors import (
    AuthError,
    InvalidInputError,
    NotFoundError,
    PosehookError,
    TooLargeError,
    TooManyRequestsError,
)
from app.fal_protocol import (
    APP,
    VIDEO_APP,
    FalError,
    object_expiry,
    parse_app_target,
    wants_logs,
)
from app.storage import UPLOAD_SLOT_SECONDS
from app.store import uploads

bp = Blueprint("fal", __name__)

FAL_SUFFIXES = (".fal.run", ".fal.ai", ".fal.media")
FAL_HOSTS = ("fal.run", "fal.ai", "fal.media")
UPLOAD_TTL = UPLOAD_SLOT_SECONDS


def install_error_handlers(blueprint: Blueprint) -> None:
    """Answer every error of a fal-surface blueprint in fal's shape, with X-Fal-Error-Type."""

    @blueprint.errorhandler(FalError)
    def _fal_error(error: FalError):
        return fal_queue.fal_error_response(error)

    @blueprint.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        messages = error.messages if isinstance(error.messages, dict) else {
            "body": error.messages}
        detail = [{"loc": ["body", field], "msg": "; ".join(map(str, problems))
                   if isinstance(problems, list) else str(problems), "type": "value_error"}
                  for field, problems in messages.items()]
        return fal_queue.fal_error_response(FalError(422, detail))

    @blueprint.errorhandler(PosehookError)
    def _posehook(error: PosehookError):
        response = fal_queue.fal_error_response(FalError(error.http_status, error.message))
        if isinstance(error, TooManyRequestsError):
            response.headers["Retry-After"] = str(error.retry_after)
        return response


install_error_handlers(bp)


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
    """Route a fal URL to our own handlers for fal-ai/dwpose and storage.

    The proxy passes the ``x-fal-target-url``; the fal-hosts listener (``hosts.py``) the
    fal URL its own path stands for, with ``g.fal_queue_base`` set to itself.
    """
    method = request.method
    target = parse_app_target(target_url, method)
    video = target.app == VIDEO_APP
    logs = wants_logs(target.query.get("logs"))
    if target.kind in ("upload", "multipart"):
        return initiate_upload(multipart=target.kind == "multipart")
    if target.kind == "submit":
        webhook = target.query.get("fal_webhook", "")
        record = fal_queue.submit(json_body(), webhook, video=video)
        return fal_queue.submit_answer(record)
    if target.kind == "run":
        return fal_queue.run(json_body(), services().settings.fal_sync_wait, video=video)
    if target.kind == "request":
        handler = {(): fal_queue.result, ("cancel",): fal_queue.cancel}.get(target.call)
        if handler is not None:
            return handler(target.request_id)
        return (fal_queue.status if target.call == ("status",) else fal_queue.stream)(
            target.request_id, logs)
    if target.app != APP:
        raise FalError(404, f"Application '{target.app}' is not served here: this "
                            f"posehook serves only {APP} and {VIDEO_APP}")
    raise FalError(404, f"{method} {target.path} is not part of fal's queue protocol")


def initiate_upload(multipart: bool = False) -> Response:
    """Answer ``{upload_url, file_url}``: a one-time PUT slot and the file's future URL.

    A multipart slot takes ``PUT {upload_url}/{n}`` parts, then ``POST {upload_url}/complete``.
    """
    body = json_body(optional=True) or {}
    content_type = str(body.get("content_type") or "application/octet-stream")[:100]
    expires_in = object_expiry(request.headers)
    storage = services().storage
    slot = secrets.token_urlsafe(24)
    key = secrets.token_urlsafe(24)
    uploads.open_slot(services().redis, slot, {
        "key": key, "content_type": content_type, "key_id": g.api_key.id,
        "multipart": "1" if multipart else "", "expires_in": str(expires_in or ""),
        "file_name": str(body.get("file_name") or "upload")[:200]}, UPLOAD_TTL)
    base = services().settings.public_base_url.rstrip("/")
    return jsonify({"upload_url": f"{base}/files/uploads/{slot}", "file_url": storage.url_for(key)})


@bp.put("/files/uploads/<slot>")
def upload(slot: str):
    """Take the bytes of an initiated upload (the slot in the URL is the permission).

    As fal's storage, any file is taken up to the upload limit: an image keeps the type its
    bytes say; anything else keeps the declared type (never an image/* one its bytes deny),
    and fails only when it is used as an image input, naming that field.
    """
    from app.images import sniff_image
    from app.retention import keep_upload

    # Peek, read and check, then use the slot: a 413 or a client gone mid-body keeps it.
    _open_slot(slot, multipart=False)
    settings = services().settings
    data = request.get_data(cache=False)
    if len(data) > settings.max_upload_bytes:
        raise TooLargeError(f"file is larger than the limit of {settings.max_upload_bytes} bytes")
    try:
        content_type, _, _ = sniff_image(data, max_pixels=settings.max_pixels, field="file")
    except PosehookError:
        content_type = None
    details = uploads.take(services().redis, slot)
    if details is None:
        raise NotFoundError("No such upload slot (it was used already or has expired)")
    stored = services().storage.put(data, content_type or stored_type(details["content_type"]),
                                    details["file_name"], key=details["key"],
                                    expires_at=_expires_at(details))
    keep_upload(services(), stored)
    return jsonify({"ok": True})


def _expires_at(details: dict[str, str]) -> float | None:
    """When an upload ends, from its slot's object lifecycle preference (None: never)."""
    seconds = details.get("expires_in")
    return time.time() + int(seconds) if seconds else None


def stored_type(declared: str) -> str:
    """Return the type a non-image upload keeps: the declared one, unless it claims an image
    or is no plain media type."""
    from app.images import MEDIA_TYPE

    text = declared.split(";")[0].strip().lower()
    if text.startswith("image/") or not MEDIA_TYPE.fullmatch(text):
        return "application/octet-stream"
    return text


def _open_slot(slot: str, multipart: bool) -> dict[str, str]:
    """Return an open slot's details (without using it); 404 when there is none of the kind."""
    details = uploads.peek(services().redis, slot)
    if details is None or bool(details.get("multipart")) != multipart:
        raise NotFoundError("No such multipart upload (it was completed or has expired)"
                            if multipart else
                            "No such upload slot (it was used already or has expired)")
    return details


MAX_PARTS = 10_000
"""The most parts of a multipart upload (as S3's and fal's), numbered 1 to this."""


@bp.put("/files/uploads/<slot>/<int:number>")
def upload_part(slot: str, number: int):
    """Take one part of a multipart upload; answer ``{partNumber, etag}`` as fal's storage."""
    _open_slot(slot, multipart=True)
    if not 1 <= number <= MAX_PARTS:
        raise NotFoundError(f"Part numbers go from 1 to {MAX_PARTS}")
    data = request.get_data(cache=False)
    limit = services().settings.max_multipart_bytes
    if len(data) > limit:
        raise TooLargeError(f"the upload is larger than the limit of {limit} bytes")
    # Stored first, then counted with its etag, only while the upload is open: complete never
    # joins a part still on its way, and a part that comes after complete is refused.
    storage = services().storage
    etag = storage.put_part(slot, number, data)
    added = uploads.add_part(services().redis, slot, number, len(data), etag, limit)
    if added != "added":  # refused once stored: the part goes too
        storage.drop_part(slot, number)
        raise TooLargeError(f"the upload is larger than the limit of {limit} bytes: part "
                            f"{number} was not kept") if added == "too large" else \
            NotFoundError("No such multipart upload (it was completed or has expired): "
                          f"part {number} came after it")
    return jsonify({"partNumber": number, "etag": etag})


def _named_parts(body: object) -> list[tuple[int, str]]:
    """Return the (partNumber, etag) pairs of a complete's body, in order, once checked: at
    most MAX_PARTS, each numbered 1..MAX_PARTS, each once (each named part costs storage
    work, so a body is refused before any of it starts)."""
    parts = body.get("parts") if isinstance(body, dict) else None
    if isinstance(parts, list) and len(parts) > MAX_PARTS:
        raise InvalidInputError(f"parts names {len(parts)} parts; a multipart upload has at "
                                f"most {MAX_PARTS}: name only the parts you uploaded",
                                field="parts")
    named = [(p.get("partNumber"), p.get("etag")) for p in parts or ()
             if isinstance(p, dict)] if isinstance(parts, list) else []
    if not named or len(named) != len(parts or ()) or not all(
            isinstance(n, int) and not isinstance(n, bool) and isinstance(e, str)
            for n, e in named):
        raise InvalidInputError("parts must list {partNumber, etag} of every part",
                                field="parts")
    if (outside := next((n for n, _ in named if not 1 <= n <= MAX_PARTS), None)) is not None:
        raise InvalidInputError(f"partNumber {outside} is out of range: part numbers go "
                                f"from 1 to {MAX_PARTS}", field="parts")
    if len({number for number, _ in named}) != len(named):
        # Each part once: a part named twice would join more bytes than were uploaded.
        raise InvalidInputError("parts must name each partNumber once", field="parts")
    return named


def _check_parts(slot: str, named: list[tuple[int, str]]) -> Callable[[dict[str, str]], None]:
    """Return the check a complete's parts pass before the upload is used: each named part
    uploaded (its ``etag:N`` in the slot) and named with the etag its PUT answered."""
    def check(details: dict[str, str]) -> None:
        for number, etag in named:
            kept = details.get(f"etag:{number}")
            if kept is None:
                base = services().settings.public_base_url.rstrip("/")
                raise InvalidInputError(f"part {number} was never uploaded: PUT it to {base}/"
                                        f"files/uploads/{slot}/{number} first, or leave it "
                                        "out of parts", field="parts")
            if not hmac.compare_digest(kept.encode(), etag.encode()):
                raise InvalidInputError(f"part {number} is not the one uploaded: name it with "
                                        "the etag its last PUT answered; the upload is still "
                                        "open", field="parts")
    return check


@bp.post("/files/uploads/<slot>/complete")
def complete_upload(slot: str):
    """Join the parts named in ``{parts: [{partNumber, etag}]}`` into the file, once.

    Every named part must have been uploaded and named with its etag (both in the slot)
    before the upload is used or storage asked anything; else the 422 says which part and
    the upload stays open for a corrected complete.
    """
    _open_slot(slot, multipart=True)
    named = _named_parts(request.get_json(silent=True))
    details = uploads.take_checked(services().redis, slot, _check_parts(slot, named))
    if details is None:
        raise NotFoundError("No such multipart upload (it was completed or has expired)")
    stored = services().storage.assemble(slot, sorted(named), stored_type(
        details["content_type"]), details["file_name"], details["key"], _expires_at(details))
    if stored is None:
        raise InvalidInputError("a part is missing or is not the one uploaded", field="parts")
    from app.retention import keep_upload

    keep_upload(services(), stored)
    return jsonify({"ok": True, "url": stored.url})
