"""Files: upload an input image or video (``POST /v1/files``); serve files
(``GET /files/<key>``)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, request, send_file

from app.api import require_api_key, services
from app.errors import InvalidInputError, NotAnImageError, NotFoundError, TooLargeError

bp = Blueprint("files", __name__)


def _upload_bytes(limit: int) -> tuple[bytes, str]:
    """Return the uploaded bytes and file name (multipart field ``file``, or the raw body)."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidInputError("multipart upload needs a part named 'file'", field="file")
        data = upload.stream.read(limit + 1)
        name = upload.filename or ""
    else:
        data = request.get_data(cache=False)
        name = request.args.get("file_name", "")
    if len(data) > limit:
        raise TooLargeError(f"file is larger than the limit of {limit} bytes", field="file")
    if not data:
        raise InvalidInputError("the upload is empty", field="file")
    return data, name[:200]


@bp.post("/v1/files")
@require_api_key
def upload():
    """Store an image or a video and answer its URL and metadata (201)."""
    from app.images import sniff_image
    from app.retention import keep_upload

    settings = services().settings
    data, name = _upload_bytes(settings.max_upload_bytes)
    try:
        content_type, width, height = sniff_image(data, max_pixels=settings.max_pixels,
                                                  field="file")
    except NotAnImageError as not_an_image:
        content_type, width, height = _sniff_video(data, not_an_image)
    stored = services().storage.put(data, content_type, name)
    keep_upload(services(), stored)
    body = {"key": stored.key, "url": stored.url, "content_type": stored.content_type,
            "file_name": stored.file_name, "file_size": stored.file_size,
            "width": width, "height": height}
    response = jsonify(body)
    response.status_code = 201
    return response


def _sniff_video(data: bytes, not_an_image: NotAnImageError) -> tuple[str, int, int]:
    """Return (content type, width, height) of a video within the video limits; a file that
    is neither an image nor a video is refused naming both."""
    from app.video import NOT_A_VIDEO, media_type, probe

    try:
        info = probe(data, services().settings, field="file")
    except InvalidInputError as exc:
        if NOT_A_VIDEO not in exc.message:
            raise  # a video, but over a limit or damaged: say that
        raise NotAnImageError(f"{not_an_image.message}; nor is it a video we can read (MP4, "
                              "MOV, WebM, MKV, AVI or MPEG-TS)", field="file") from exc
    return media_type(info), info.width, info.height


@bp.get("/files/<key>")
def download(key: str):
    """Serve a stored file with its content type (no key needed: the key is unguessable).

    From a local directory with send_file; from S3 streamed through us with the same
    headers, or, with POSEHOOK_STORAGE_PRESIGN, a redirect to a short-lived signed URL.
    """
    storage = services().storage
    path = storage.path_of(key)
    if path is not None:
        stored = storage.stat(key)
        if stored is None:
            raise NotFoundError("No such file")
        response = send_file(path, mimetype=stored.content_type,
                             download_name=stored.file_name, max_age=86400, conditional=True,
                             as_attachment=_attachment(stored))
    elif (signed := storage.presigned_url(key)) is not None:
        if storage.stat(key) is None:
            raise NotFoundError("No such file")
        response = redirect(signed, code=307)
        # The redirect must not outlive the signature it points at.
        response.headers["Cache-Control"] = "private, max-age=0, no-store"
    else:
        found = storage.open(key)
        if found is None:
            raise NotFoundError("No such file")
        body, stored = found
        response = send_file(body, mimetype=stored.content_type,
                             download_name=stored.file_name, max_age=86400, conditional=False,
                             etag=stored.etag or False, last_modified=stored.modified or None,
                             as_attachment=_attachment(stored))
        response.content_length = stored.file_size
        # As send_file does for a path: 304 for a matching ETag, 206 for a Range (skipped
        # through the stream; files are at most the upload limit).
        response = response.make_conditional(request.environ, accept_ranges=True,
                                             complete_length=stored.file_size)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response


def _attachment(stored) -> bool:
    """Not an image (fal-style storage takes any file): a download, never a page of ours."""
    return not stored.content_type.startswith("image/")
