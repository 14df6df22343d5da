"""Input images: formats, orientation, transparency, damaged bytes, bombs, data URIs."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidInputError, NotAnImageError, TooLargeError
from app.images import ByteLimit, decode_image, parse_data_uri, sniff_image
from tests.conftest import LARGE

LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    """Return an image's bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_the_sample_photo_decodes_to_rgb(sample_bytes):
    array = decode_image(sample_bytes, max_pixels=LIMIT)
    assert array.shape == (259, 194, 3) and array.dtype == np.uint8
    assert sniff_image(sample_bytes, max_pixels=LIMIT) == ("image/jpeg", 194, 259)


@pytest.mark.parametrize("fmt, mime", [("PNG", "image/png"), ("WEBP", "image/webp"),
                                       ("BMP", "image/bmp"), ("GIF", "image/gif")])
def test_each_supported_format(fmt, mime):
    data = encode(Image.new("RGB", (30, 20), (200, 10, 10)), fmt)
    assert sniff_image(data, max_pixels=LIMIT) == (mime, 30, 20)
    assert decode_image(data, max_pixels=LIMIT).shape == (20, 30, 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(image, "JPEG", exif=exif.tobytes())
    assert decode_image(data, max_pixels=LIMIT).shape == (40, 10, 3)
    assert sniff_image(data, max_pixels=LIMIT) == ("image/jpeg", 10, 40)  # as it is shown


def test_damaged_exif_is_ignored_not_fatal(sample_bytes):
    image = Image.new("RGB", (40, 10), (0, 0, 255))
    exif = Image.Exif()
    exif[0x010F] = "Camera"  # Make, a string...
    exif[0x0112] = 6  # and a quarter turn, so the EXIF is rewritten when applied
    data = encode(image, "JPEG", exif=exif.tobytes())
    # ...relabelled as XResolution (a rational): Pillow's EXIF rewrite then fails.
    data = data.replace(b"\x01\x0f\x00\x02", b"\x01\x1a\x00\x02")
    assert decode_image(data, max_pixels=LIMIT).shape[2] == 3


@pytest.mark.parametrize("value, grey", [(32768, 128), (1000, 3), (65535, 255)])
def test_sixteen_bit_grey_keeps_its_tones(value, grey):
    data = encode(Image.fromarray(np.full((8, 8), value, np.uint16)), "PNG")
    assert decode_image(data, max_pixels=LIMIT)[0, 0].tolist() == [grey] * 3


def test_gif_takes_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixel = decode_image(data, max_pixels=LIMIT)[4, 4]
    assert pixel[0] > 200 and pixel[1] < 50


def test_transparent_pixels_go_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    array = decode_image(encode(image, "PNG"), max_pixels=LIMIT)
    assert tuple(array[3, 3]) == (255, 255, 255) and tuple(array[0, 0]) == (255, 0, 0)


def test_grayscale_becomes_rgb():
    array = decode_image(encode(Image.new("L", (5, 5), 77), "PNG"), max_pixels=LIMIT)
    assert array.shape == (5, 5, 3) and tuple(array[0, 0]) == (77, 77, 77)


@pytest.mark.parametrize("data", [b"", b"hello world", b"\x89PNG\r\n\x1a\n garbage",
                                  b"GIF89a" + b"\x00" * 3, b"%PDF-1.4 not an image"])
def test_bytes_that_are_not_an_image(data):
    with pytest.raises(NotAnImageError, match="image_url"):
        decode_image(data, max_pixels=LIMIT)


def test_a_truncated_jpeg_is_refused(sample_bytes):
    with pytest.raises(NotAnImageError):
        decode_image(sample_bytes[: len(sample_bytes) // 3], max_pixels=LIMIT)


def test_unsupported_formats_are_refused():
    data = encode(Image.new("RGB", (4, 4)), "TIFF")
    with pytest.raises(NotAnImageError, match="TIFF"):
        sniff_image(data, max_pixels=LIMIT)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size: the classic decompression bomb's header."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload +
                struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_decoding():
    bomb = _png_header_only(50_000, 50_000)
    assert len(bomb) < 200
    with pytest.raises(TooLargeError, match="pixels"):
        sniff_image(bomb, max_pixels=LIMIT)
    with pytest.raises(TooLargeError):
        decode_image(bomb, max_pixels=LIMIT)


def test_the_pixel_limit_is_a_setting():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(TooLargeError):
        sniff_image(data, max_pixels=9_999)
    assert sniff_image(data, max_pixels=10_000)[1:] == (100, 100)


def test_a_large_photo_is_read_whole_under_the_limit_and_refused_over_it():
    data = LARGE.read_bytes()
    pixels = 1940 * 2590
    assert sniff_image(data, max_pixels=pixels) == ("image/jpeg", 1940, 2590)
    assert decode_image(data, max_pixels=pixels).shape == (2590, 1940, 3)
    with pytest.raises(TooLargeError, match="pixels"):
        sniff_image(data, max_pixels=pixels - 1)
    with pytest.raises(TooLargeError):
        decode_image(data, max_pixels=pixels - 1)


KB, TEN = ByteLimit(1000, "POSEHOOK_MAX_UPLOAD_BYTES"), ByteLimit(10, "POSEHOOK_MAX_UPLOAD_BYTES")


def test_data_uris():
    payload = encode(Image.new("RGB", (3, 3)), "PNG")
    uri = "data:image/png;base64," + base64.b64encode(payload).decode()
    assert parse_data_uri(uri, KB) == (payload, "image/png")
    # Refused from the base64's length before decoding, then from the bytes themselves.
    with pytest.raises(TooLargeError, match=r"image is about \d+ bytes, more than the limit "
                                            r"of 10 \(POSEHOOK_MAX_UPLOAD_BYTES\)"):
        parse_data_uri(uri, TEN)
    with pytest.raises(TooLargeError, match=f"video is {len(payload)} bytes, more than the "
                                            r"limit of \d+ \(POSEHOOK_VIDEO_MAX_BYTES\)"):
        parse_data_uri(uri, ByteLimit(len(payload) - 1, "POSEHOOK_VIDEO_MAX_BYTES"), what="video")
    with pytest.raises(InvalidInputError, match="base64"):
        parse_data_uri("data:image/png;base64,@@@@", KB)
    with pytest.raises(InvalidInputError, match="data URI"):
        parse_data_uri("data:image/png;base64", KB)
    with pytest.raises(InvalidInputError, match="empty"):
        parse_data_uri("data:image/png;base64,", KB)
    for broken in ("image/png\r\nX-Evil: 1", "image/p ng", "image/png\u00e9", "png"):
        with pytest.raises(InvalidInputError, match="media type .* is not a type/subtype"):
            parse_data_uri(f"data:{broken};base64," + base64.b64encode(payload).decode(),
                           KB)
    assert parse_data_uri("data:;base64,AA==", TEN) == (b"\0", "text/plain")
    # Line-wrapped (as base64(1) writes it), percent-encoded, or BASE64 in capitals: all fine.
    wrapped = base64.encodebytes(payload).decode()
    encoded = base64.b64encode(payload).decode().replace("+", "%2B").replace("/", "%2F")
    for text in (f"data:image/png;base64,{wrapped}", f"data:Image/PNG;BASE64, {wrapped}",
                 f"data:image/png;base64,{encoded}"):
        assert parse_data_uri(text, KB) == (payload, "image/png")
