"""The web process sniffs images from their headers: it never decodes pixels."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from app.images import decode_image, sniff_image

LIMIT = 40_000_000


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Record every decode of an opened file's pixels (the real decoder still runs)."""
    calls: list[str] = []
    real = ImageFile.ImageFile.load

    def counted(self):
        calls.append(type(self).__name__)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return calls


def _flat_png(size: int, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    options = {"exif": exif} if exif else {}
    Image.new("RGBA", (size, size)).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def test_a_large_flat_png_is_sniffed_without_decoding_it(loads):
    data = _flat_png(4000)  # 64 MB of pixels in some 60 KB
    assert len(data) < 200_000
    assert sniff_image(data, max_pixels=LIMIT) == ("image/png", 4000, 4000)
    assert loads == []


def test_a_png_turned_by_exif_before_its_pixels_is_sniffed_as_shown(loads):
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.new("RGB", (40, 10))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    assert sniff_image(data, max_pixels=LIMIT) == ("image/png", 10, 40)
    assert loads == []
    assert decode_image(data, max_pixels=LIMIT).shape == (40, 10, 3)  # the worker turns it
    assert loads
