"""Files: upload an input image (``POST /v1/files``); serve files (``GET /files/<key>``)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request, send_file

from app.api import require_api_key, services
from app.errors import InvalidInputError, NotFoundError, TooLargeError

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
    """Store an image and answer its URL and metadata (201)."""
    from app.images import sniff_image

    settings = services().settings
    data, name = _upload_bytes(settings.max_upload_bytes)
    content_type, width, height = sniff_image(data, max_pixels=settings.max_pixels, field="file")
    stored = services().storage.put(data, content_type, name)
    body = {"key": stored.key, "url": stored.url, "content_type": stored.content_type,
            "file_name": stored.file_name, "file_size": stored.file_size,
            "width": width, "height": height}
    response = jsonify(body)
    response.status_code = 201
    return response


@bp.get("/files/<key>")
def download(key: str):
    """Serve a stored file with its content type (no key needed: the key is unguessable)."""
    found = services().storage.open(key)
    if found is None:
        raise NotFoundError("No such file")
    path, stored = found
    # Not an image (fal-style storage takes any file): a download, never a page of ours.
    response = send_file(path, mimetype=stored.content_type, download_name=stored.file_name,
                         max_age=86400, conditional=True,
                         as_attachment=not stored.content_type.startswith("image/"))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response
