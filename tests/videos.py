"""Test videos made with PyAV: the sample photo moved (and scaled) across a grey canvas."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import SAMPLE

WIDTH, HEIGHT = 320, 240


def person_at(frame: int, frames: int, shift: int, height: int = HEIGHT) -> tuple[int, float]:
    """Return (left edge in pixels, scale) of the person in a frame: she walks ``shift``
    pixels to the right over the clip and grows by a tenth (from 0.72 of the photo's size on a
    240-pixel-high canvas, in proportion on others)."""
    t = frame / max(1, frames - 1)
    return round(10 + shift * t), (0.72 + 0.08 * t) * height / HEIGHT


def frame_image(frame: int, frames: int, shift: int, width: int = WIDTH,
                height: int = HEIGHT, people: int = 1) -> np.ndarray:
    """Return one (H, W, 3) RGB frame; ``people`` > 1: each walks in its own lane (a copy of
    the photo, each lane ``width / people`` wide, the shift shared out)."""
    photo = Image.open(SAMPLE).convert("RGB")
    canvas = Image.new("RGB", (width, height), (120, 120, 120))
    lane = width // people
    left, scale = person_at(frame, frames, shift // people, height)
    scale = min(scale, 0.9 * (lane - shift // people - 10) / photo.width) if people > 1 else scale
    person = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    for k in range(people):
        canvas.paste(person, (k * lane + left, height - person.height - 4))
    return np.asarray(canvas)


def make_video(path: Path, frames: int = 24, fps: Fraction | int = 12, shift: int = 120,
               width: int = WIDTH, height: int = HEIGHT, codec: str = "libx264",
               container: str = "mp4", audio: bool = False, people: int = 1) -> Path:
    """Encode a clip of the sample walking to the right; return its path."""
    import av

    options = {"movflags": "+faststart"} if container == "mp4" else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for index in range(frames):
            image = av.VideoFrame.from_ndarray(
                frame_image(index, frames, shift, width, height, people), format="rgb24")
            image.pts = index
            out.mux(stream.encode(image))
        out.mux(stream.encode())
        if sound is not None:
            samples = np.zeros((1, 16000), dtype=np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return path


def read_video(data: bytes) -> tuple[list[np.ndarray], dict]:
    """Decode every frame of an MP4; return (RGB frames, facts of its streams)."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        facts = {"width": stream.codec_context.width, "height": stream.codec_context.height,
                 "rate": stream.average_rate, "frames": stream.frames,
                 "codec": stream.codec_context.name, "format": container.format.name,
                 "audio": len(container.streams.audio)}
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, facts


def mjpeg_with_large_frames(small: int = 4, large: int = 2, header: tuple[int, int] = (64, 48),
                            size: tuple[int, int] = (3000, 3000)) -> bytes:
    """Return an AVI of MJPEG frames whose header says ``header`` but whose last ``large``
    frames are JPEGs of ``size`` (each frame of an MJPEG is a JPEG of its own, at any size):
    a decompression bomb, small on disk (grey JPEGs compress to almost nothing)."""
    import io

    import av

    def jpeg(width: int, height: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (width, height), (90, 90, 90)).save(out, "JPEG", quality=50)
        return out.getvalue()

    frames = [jpeg(*header)] * small + [jpeg(*size)] * large
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=Fraction(10))
        stream.width, stream.height, stream.pix_fmt = *header, "yuvj420p"
        for index, data in enumerate(frames):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = stream, index, index
            packet.time_base = Fraction(1, 10)
            out.mux(packet)
    return buffer.getvalue()


class _Pipe:
    """A write-only, non-seekable sink: a muxer cannot go back to write the length."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> int:
        self.data += chunk
        return len(chunk)

    def seekable(self) -> bool:
        return False


def streamed_video(frames: int, fps: int, container: str = "webm", codec: str = "libvpx",
                   width: int = 64, height: int = 48) -> bytes:
    """Return a WebM (or MKV) written as a stream, as a browser's MediaRecorder writes one:
    its header lists neither a duration nor a frame count."""
    import av

    pipe = _Pipe()
    with av.open(pipe, "w", format=container) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = av.VideoFrame.from_ndarray(
                frame_image(index, frames, 20, width, height), format="rgb24")
            image.pts = index
            out.mux(stream.encode(image))
        out.mux(stream.encode())
    return bytes(pipe.data)
