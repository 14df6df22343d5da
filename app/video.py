"""Video in and out with PyAV (FFmpeg): check a file against the limits, decode it frame by
frame, encode pose frames as H.264 in MP4.

Nothing here holds more than one frame: ``decode_frames`` yields RGB arrays one at a time
and ``Encoder`` writes each to a file on disk as it comes, so memory stays flat whatever
the length. Audio and every other stream are dropped. No Flask, no engine: numpy and PyAV.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from app.config import Settings
from app.errors import InvalidInputError
from app.images import ByteLimit, check_shape

if TYPE_CHECKING:
    import numpy as np

FIELD = "input.video_url"
CONTAINERS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts"}
"""Demuxers we take (FFmpeg's names): MP4/MOV, Matroska/WebM, AVI, MPEG-TS. Image demuxers
(a JPEG opens as a one-frame "video") and everything else are refused."""
CONTENT_TYPE = "video/mp4"
MEDIA_TYPES = {"mov": "video/mp4", "matroska": "video/x-matroska", "avi": "video/x-msvideo",
               "mpegts": "video/mp2t"}
"""The type a video of each demuxer is stored with (what its bytes are, whatever was said)."""
NOT_A_VIDEO = "the bytes are not a video we can read (MP4, MOV, WebM, MKV, AVI or MPEG-TS)"
TRUNCATION_SLACK = 2
"""Frames a file may decode short of the count its header lists before it is truncated."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says: size, frame rate, frames (0: not listed), seconds."""

    width: int
    height: int
    fps: Fraction
    frames: int
    duration: float
    codec: str
    container: str

    @property
    def expected_frames(self) -> int:
        """Return the frame count listed, else the one duration x rate gives; 0 when the
        header gives neither (a streamed WebM or MKV, as a browser's MediaRecorder writes:
        its length and frames are then checked against the limits as they are decoded)."""
        return self.frames or math.ceil(self.duration * float(self.fps))


def _bad(message: str, field: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {message}", field=field)


def _open(data: bytes, field: str) -> tuple[Any, Any, VideoInfo]:
    """Open a container and its first video stream; raise InvalidInputError for anything else."""
    import av

    try:
        # Only our demuxers ever parse the bytes (FFmpeg would otherwise probe them with
        # every one it has, image and playlist readers included).
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore",
                            options={"format_whitelist": ",".join(sorted(CONTAINERS))})
    except (av.FFmpegError, ValueError, IndexError, OSError) as exc:
        raise _bad(NOT_A_VIDEO, field) from exc
    names = set(container.format.name.split(","))
    if not names & CONTAINERS or not container.streams.video:
        container.close()
        raise _bad(NOT_A_VIDEO if not names & CONTAINERS else "the file has no video stream",
                   field)
    stream = container.streams.video[0]
    context = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    else:
        seconds = (container.duration or 0) / 1_000_000
    if not rate or rate <= 0 or not context.width or not context.height:
        container.close()
        raise _bad("the video's frame rate or size cannot be read (a damaged header?)", field)
    info = VideoInfo(width=context.width, height=context.height, fps=Fraction(rate),
                     frames=max(0, stream.frames or 0), duration=max(0.0, seconds),
                     codec=context.name, container=container.format.name.split(",")[0])
    return container, stream, info


def media_type(info: VideoInfo) -> str:
    """Return the content type a video is stored and served with: its container's."""
    return MEDIA_TYPES.get(info.container, "application/octet-stream")


def check_limits(info: VideoInfo, settings: Settings, field: str = FIELD) -> None:
    """Refuse a video over a limit, naming the limit (its setting) and the video's value."""
    checks = (
        (info.width * info.height > settings.video_max_pixels,
         f"{info.width}x{info.height} = {info.width * info.height} pixels per frame, more "
         f"than the limit of {settings.video_max_pixels} (POSEHOOK_VIDEO_MAX_PIXELS)"),
        (info.duration > settings.video_max_seconds,
         f"{info.duration:.1f} s, longer than the limit of {settings.video_max_seconds:g} s "
         "(POSEHOOK_VIDEO_MAX_SECONDS)"),
        (info.expected_frames > settings.video_max_frames,
         f"{info.expected_frames} frames, more than the limit of {settings.video_max_frames} "
         "(POSEHOOK_VIDEO_MAX_FRAMES)"),
        (float(info.fps) > settings.video_max_fps,
         f"{float(info.fps):.2f} frames per second, more than the limit of "
         f"{settings.video_max_fps:g} (POSEHOOK_VIDEO_MAX_FPS)"),
    )
    for over, what in checks:
        if over:
            raise _bad(f"the video has {what}", field)
    check_shape(info.width, info.height, field, "video")


def byte_limit(settings: Settings) -> ByteLimit:
    """The byte limit of a video, sent, downloaded or one of our own files."""
    return ByteLimit(settings.video_max_bytes, "POSEHOOK_VIDEO_MAX_BYTES")


def probe(data: bytes, settings: Settings, field: str = FIELD) -> VideoInfo:
    """Read a video's header and check it against every limit (nothing is decoded)."""
    byte_limit(settings).check(len(data), field, "video")
    container, _, info = _open(data, field)
    container.close()
    check_limits(info, settings, field)
    return info


def decode_frames(data: bytes, settings: Settings,
                  field: str = FIELD) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """Return the header's info and an iterator of (H, W, 3) uint8 RGB frames, one at a time.

    Every frame comes at the header's size. The iterator raises InvalidInputError when the
    data is damaged, when a frame is over a limit whatever the header said (its pixels, its
    number, its time from the first frame: see ``_check_frame``), or at the end when the file
    holds fewer frames than its header lists (a truncated file).
    """
    info = probe(data, settings, field)
    return info, _frames(data, info, settings, field)


def _frames(data: bytes, info: VideoInfo, settings: Settings,
            field: str) -> Iterator[np.ndarray]:
    """Decode the frames (the file is opened again on the first one, so an iterator that is
    never started holds nothing open)."""
    import av

    container, stream, _ = _open(data, field)
    # The header's size is checked, but a frame may come at any size (each of an MJPEG's is
    # a JPEG of its own): FFmpeg refuses one far over the limit before it allocates it. It
    # counts rows padded for alignment, so it is given twice the limit; _check_frame is exact.
    stream.codec_context.options = {"max_pixels": str(2 * settings.video_max_pixels)}
    count, start = 0, None
    try:
        for frame in container.decode(stream):
            count += 1
            start = _check_frame(frame, count, start, info, settings, field)
            yield frame.to_ndarray(width=info.width, height=info.height, format="rgb24")
    except av.FFmpegError as exc:
        raise _bad(f"the {info.codec} video data is damaged, truncated or cannot be decoded "
                   f"after frame {count} (or its next frame has more pixels than the limit of "
                   f"{settings.video_max_pixels}, POSEHOOK_VIDEO_MAX_PIXELS)", field) from exc
    finally:
        container.close()
    if count == 0:
        raise _bad("the video has no frame that can be decoded", field)
    if info.frames and count < info.frames - TRUNCATION_SLACK:
        raise _bad(f"the video is truncated: {count} of the {info.frames} frames its header "
                   "lists could be decoded", field)


def _check_frame(frame: Any, count: int, start: Fraction | None, info: VideoInfo,
                 settings: Settings, field: str) -> Fraction:
    """Refuse the ``count``-th decoded frame when it is over a limit: its pixels, the frame
    count, or its time from the first frame (``start``, returned). The header's values were
    checked already, but a header may lie or, when streamed, list no length at all."""
    pixels = frame.width * frame.height
    if pixels > settings.video_max_pixels:
        raise _bad(f"frame {count} is {frame.width}x{frame.height} = {pixels} pixels, more "
                   f"than the limit of {settings.video_max_pixels} (POSEHOOK_VIDEO_MAX_PIXELS)",
                   field)
    if count > settings.video_max_frames:
        raise _bad(f"the video has more than the limit of {settings.video_max_frames} "
                   "frames (POSEHOOK_VIDEO_MAX_FRAMES)", field)
    at = (frame.pts * frame.time_base if frame.pts is not None and frame.time_base
          else Fraction(count - 1) / info.fps)
    start = at if start is None else min(start, at)
    # A frame that starts at the limit or later makes the video longer than it.
    if at - start >= Fraction(settings.video_max_seconds):
        raise _bad(f"the video is longer than the limit of {settings.video_max_seconds:g} s "
                   f"(POSEHOOK_VIDEO_MAX_SECONDS): frame {count} starts at "
                   f"{float(at - start):.1f} s", field)
    return start


def pick_encoder() -> tuple[str, str]:
    """Return (encoder, pixel format) for even-sized frames: libx264 when the FFmpeg build
    has it (H.264, what players and browsers expect), else FFmpeg's own MPEG-4 Part 2."""
    import av

    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:
        return "mpeg4", "yuv420p"
    return "libx264", "yuv420p"


class Encoder:
    """Write RGB frames to an MP4 file at a constant frame rate, one frame at a time.

    H.264 4:2:0 needs even sizes: an odd-sized video is kept at its size as H.264 4:4:4
    (High 4:4:4; some browsers do not play it). The moov atom goes first (faststart), so a
    player can start before the whole file is there.
    """

    def __init__(self, path: str, width: int, height: int, fps: Fraction) -> None:
        import av

        self.codec, pix_fmt = pick_encoder()
        if self.codec == "libx264" and (width % 2 or height % 2):
            pix_fmt = "yuv444p"
        self._av = av
        self._out = av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"})
        self._stream = self._out.add_stream(self.codec, rate=fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        if self.codec == "libx264":
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame."""
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        for packet in self._stream.encode():
            self._out.mux(packet)
        self._out.close()

    def abort(self) -> None:
        """Close without caring for the file (it is thrown away)."""
        try:
            self._out.close()
        except Exception:  # noqa: BLE001 - a half-written file is deleted anyway
            pass


class KeypointsWriter:
    """Write the per-frame OpenPose documents of a video to one JSON file as they come.

    ``{"width", "height", "fps", "frames": [{"frame", "time", "people": [{"person_id",
    "pose_keypoints_2d", ...}]}]}``: each person is the photo JSON's (OpenPose's layout, or
    COCO-WholeBody's with ``keypoints_format``) plus its track's id.
    """

    def __init__(self, path: str, width: int, height: int, fps: Fraction) -> None:
        import json

        self._json = json
        self._fps = fps
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._file.write(json.dumps({"width": width, "height": height,
                                     "fps": round(float(fps), 6)})[:-1] + ', "frames": [')
        self.frames = 0

    def write(self, document: dict[str, Any], ids: list[int]) -> None:
        """Add one frame's OpenPose document, its people given the track ids ``ids``."""
        people = [{"person_id": pid, **person}
                  for pid, person in zip(ids, document["people"], strict=True)]
        entry = {"frame": self.frames, "time": round(self.frames / float(self._fps), 6),
                 "people": people}
        self._file.write(("," if self.frames else "") + self._json.dumps(
            entry, separators=(",", ":")))
        self.frames += 1

    def close(self) -> None:
        """Finish the document."""
        self._file.write("]}")
        self._file.close()
