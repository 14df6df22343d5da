"""Safe loading of input images: data URIs, our own files, http(s) URLs; limits on everything.

No Flask here, and no model runtime: numpy and Pillow only. The API calls the fast
checks (``validate_image_url``, ``parse_data_uri``, ``sniff_image``); workers load
and decode (``load_image_bytes``, ``decode_image``).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, unquote_to_bytes

from app.config import Settings
from app.errors import InvalidInputError, NotAnImageError, TooLargeError
from app.outbound import Guard, fetch

if TYPE_CHECKING:
    import numpy as np

FIELD = "input.image_url"
MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
"""A plain ``type/subtype`` (RFC 6838's characters, lower case): what may be a file's type."""
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
           "GIF": "image/gif", "MPO": "image/jpeg"}


def parse_data_uri(uri: str, limit: ByteLimit, field: str = FIELD,
                   what: str = "image") -> tuple[bytes, str]:
    """Return (bytes, media type) of a ``data:`` URI, refusing it before decoding when over
    ``limit`` (the message names ``what`` it holds and the limit's setting)."""
    header, sep, payload = uri.partition(",")
    if not uri.startswith("data:") or not sep:
        raise InvalidInputError(f"{field} is not a valid data URI (data:<type>;base64,<data>)",
                                field=field)
    params = [p.strip().lower() for p in header[5:].split(";")]
    media_type = params[0] or "text/plain"
    if not MEDIA_TYPE.fullmatch(media_type):  # CR, LF, spaces...: nothing a header may carry
        raise InvalidInputError(f"{field}: the data URI's media type {media_type[:80]!r} is "
                                "not a type/subtype (such as video/mp4)", field=field)
    is_base64 = "base64" in params[1:]
    if is_base64:  # line-wrapped (as base64(1) writes it) or percent-encoded base64 is fine
        payload = "".join(unquote(payload).split())
    # base64 is 4 characters per 3 bytes: refuse early without decoding a huge string.
    estimate = len(payload) * 3 // 4 if is_base64 else len(payload)
    if estimate > limit.bytes + 3:
        limit.check(estimate, field, what, about=True)
    try:
        data = (base64.b64decode(payload, validate=True) if is_base64
                else unquote_to_bytes(payload))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{field}: the data URI's base64 is not valid",
                                field=field) from exc
    limit.check(len(data), field, what)
    if not data:
        raise InvalidInputError(f"{field}: the data URI is empty", field=field)
    return data, media_type


def _open(data: bytes, max_pixels: int, field: str) -> Any:
    """Open an image lazily (header only) and refuse formats and sizes we do not take."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLargeError(f"{field}: the image has more than {max_pixels} pixels",
                            field=field) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise NotAnImageError(f"{field}: the bytes are not an image we can read "
                              "(JPEG, PNG, WebP, BMP or GIF)", field=field) from exc
    if image.format not in FORMATS:
        raise NotAnImageError(f"{field}: {image.format} images are not supported; "
                              "send JPEG, PNG, WebP, BMP or GIF", field=field)
    width, height = image.size
    if width * height > max_pixels:
        raise TooLargeError(f"{field}: the image has {width}x{height} pixels, more than "
                            f"{max_pixels}", field=field)
    if width < 1 or height < 1:
        raise NotAnImageError(f"{field}: the image is empty", field=field)
    return image


def sniff_image(data: bytes, *, max_pixels: int, field: str = FIELD) -> tuple[str, int, int]:
    """Return (content type, width, height) from the header, without decoding pixels."""
    image = _open(data, max_pixels, field)
    width, height = image.size
    return FORMATS[image.format], *((height, width) if _turned(image) else (width, height))


def _turned(image: Any) -> bool:
    """Return True when the EXIF read with the header asks for a quarter turn.

    Only EXIF that comes before the pixels is read: for PNG, Pillow's ``getexif`` would
    decode the whole image to look for an eXIf chunk after the pixel data, which is what a
    web process must never do (a small file can hold a huge flat picture). The worker's
    decode still applies every orientation.
    """
    from PIL import Image

    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return False
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = image.getexif()  # JPEG and WebP keep EXIF in their headers
        return exif.get(0x0112) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
    except Exception:  # noqa: BLE001 - damaged EXIF is ignored, as when decoding
        return False


def _upright(image: Any) -> Any:
    """Apply the EXIF orientation; damaged EXIF is ignored rather than failing the photo."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on bad EXIF; the pixels are fine
        return image


def check_shape(width: int, height: int, field: str = FIELD, what: str = "image") -> None:
    """Refuse a picture thinner than the engine can pose (``app.engine.MAX_ASPECT``:1)."""
    from app.engine import MAX_ASPECT

    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidInputError(
            f"{field}: the {what} is {width}x{height}, thinner than the limit of {MAX_ASPECT}:1 "
            "(long side to short side) where a person can still be found; crop it",
            field=field)


def sniff_input(data: bytes, settings: Settings, field: str = FIELD) -> str:
    """Return the content type of a photo to pose, refusing it when its header says we
    would never decode or pose it (pixels, shape)."""
    content_type, width, height = sniff_image(data, max_pixels=settings.max_pixels,
                                              field=field)
    check_shape(width, height, field)
    return content_type


def decode_image(data: bytes, *, max_pixels: int, field: str = FIELD) -> np.ndarray:
    """Decode a photo to pose to an (H, W, 3) uint8 RGB array: EXIF orientation applied,
    alpha on white; refused when too large or too thin."""
    import numpy as np
    from PIL import Image

    image = _open(data, max_pixels, field)
    check_shape(*image.size, field)
    try:
        image.seek(0)  # GIF and other animations: the first frame
        image.load()
        image = _upright(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # 16-bit grey: keep the top 8 bits (Pillow's conversion would clip to white).
            grey = np.asarray(image, dtype=np.uint32) >> 8
            image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L")
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and
                                                  "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(canvas, rgba)
        rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise NotAnImageError(f"{field}: the image data is damaged or truncated",
                              field=field) from exc
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


class ByteLimit(NamedTuple):
    """The most bytes an input may have, and the setting that says so."""

    bytes: int
    setting: str

    def check(self, size: int, field: str, what: str = "file", about: bool = False) -> None:
        """Refuse a file of ``size`` bytes over the limit, naming the limit's setting
        (``about``: the size is estimated, as from a data URI's base64 before decoding)."""
        if size > self.bytes:
            raise TooLargeError(f"{field}: the {what} is {'about ' if about else ''}{size} "
                                f"bytes, more than the limit of {self.bytes} ({self.setting})",
                                field=field)


def upload_limit(settings: Settings) -> ByteLimit:
    """The byte limit of a file sent in a request's body (an upload, a data URI)."""
    return ByteLimit(settings.max_upload_bytes, "POSEHOOK_MAX_UPLOAD_BYTES")


def photo_limit(settings: Settings) -> ByteLimit:
    """The byte limit of a photo to pose, downloaded or one of our own files."""
    return ByteLimit(settings.max_download_bytes, "POSEHOOK_MAX_DOWNLOAD_BYTES")


def check_own_file(storage: Any, key: str, limit: ByteLimit, field: str = FIELD) -> None:
    """Refuse our own stored file when it is gone or over ``limit`` (from its size on
    record: nothing is read)."""
    found = storage.stat(key)
    if found is None:
        raise InvalidInputError(f"{field}: no such uploaded file (or it expired)", field=field)
    limit.check(found.file_size, field)


def validate_image_url(url: str, settings: Settings, guard: Guard, storage: Any,
                       field: str = FIELD, limit: ByteLimit | None = None) -> None:
    """Refuse, at submit time, an input URL we would never load; ``limit`` bounds our own
    files (by default a photo's, ``photo_limit``)."""
    key = storage.key_from_url(url)
    if key is not None:
        check_own_file(storage, key, limit or photo_limit(settings), field)
        return
    if url.startswith("data:"):
        data, _ = parse_data_uri(url, upload_limit(settings), field)
        sniff_input(data, settings, field)
        return
    if url.startswith(("http://", "https://")):
        guard.check_url(url, field)
        return
    raise InvalidInputError(f"{field} must be an http(s) URL, a data URI or a URL from "
                            "POST /v1/files", field=field)


def load_image_bytes(url: str, settings: Settings, guard: Guard, storage: Any,
                     field: str = FIELD, limit: ByteLimit | None = None) -> bytes:
    """Return an input's bytes: our own file, a data URI, or a guarded, bounded download.

    ``limit`` bounds our own file (checked before it is read) and the download (by default
    a photo's, ``photo_limit``).
    """
    limit = limit or photo_limit(settings)
    key = storage.key_from_url(url)
    if key is not None:
        check_own_file(storage, key, limit, field)
        data = storage.read(key)
        if data is None:
            raise InvalidInputError(f"{field}: the uploaded file is gone", field=field)
        return data
    if url.startswith("data:"):
        return parse_data_uri(url, upload_limit(settings), field)[0]
    validate_image_url(url, settings, guard, storage, field)
    body, _ = fetch(url, guard, max_bytes=limit.bytes,
                    timeout=settings.download_timeout, max_redirects=settings.max_redirects,
                    field=field)
    return body
