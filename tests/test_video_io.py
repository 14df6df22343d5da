"""app/video.py alone: containers read, limits named, frames kept, H.264 written."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from app.config import load_settings
from app.errors import InvalidInputError, TooLargeError
from app.video import Encoder, VideoInfo, decode_frames, pick_encoder, probe
from tests.videos import make_video, mjpeg_with_large_frames, read_video, streamed_video


@pytest.mark.parametrize("codec, container, ext", [
    ("libx264", "mp4", "mp4"), ("libvpx-vp9", "webm", "webm"), ("libx264", "matroska", "mkv"),
    ("mpeg4", "avi", "avi"), ("libx264", "mpegts", "ts")])
def test_every_container_we_take_decodes_to_its_frames_at_its_size(tmp_path, codec, container,
                                                                   ext):
    clip = make_video(tmp_path / f"c.{ext}", frames=10, fps=10, width=160, height=120,
                      codec=codec, container=container)
    info, frames = decode_frames(clip.read_bytes(), load_settings({}))
    decoded = list(frames)
    assert (info.width, info.height, info.fps, info.expected_frames) == (160, 120, 10, 10)
    assert len(decoded) == 10 and all(f.shape == (120, 160, 3) for f in decoded)


LIMITS = [
    ({"video_max_pixels": 160 * 119}, "19200 pixels per frame, more than the limit of 19040 "
                                      "(POSEHOOK_VIDEO_MAX_PIXELS)"),
    ({"video_max_seconds": 0.5}, "1.0 s, longer than the limit of 0.5 s "
                                 "(POSEHOOK_VIDEO_MAX_SECONDS)"),
    ({"video_max_frames": 9}, "10 frames, more than the limit of 9 (POSEHOOK_VIDEO_MAX_FRAMES)"),
    ({"video_max_fps": 5}, "10.00 frames per second, more than the limit of 5 "
                           "(POSEHOOK_VIDEO_MAX_FPS)"),
]


@pytest.mark.parametrize("limit, message", LIMITS)
def test_a_video_over_a_limit_is_refused_naming_it(tmp_path, limit, message):
    clip = make_video(tmp_path / "c.mp4", frames=10, fps=10, width=160, height=120)
    with pytest.raises(InvalidInputError) as refused:
        probe(clip.read_bytes(), load_settings(limit))
    assert refused.value.field == "input.video_url" and message in refused.value.message


def test_a_file_over_the_byte_limit_is_413_class_and_names_it(tmp_path):
    clip = make_video(tmp_path / "c.mp4", frames=4, width=64, height=48).read_bytes()
    with pytest.raises(TooLargeError, match="POSEHOOK_VIDEO_MAX_BYTES"):
        probe(clip, load_settings({"video_max_bytes": len(clip) - 1}))


def test_frames_past_the_limit_fail_while_decoding_whatever_the_header_said(tmp_path):
    from app.video import _frames

    clip = make_video(tmp_path / "c.webm", frames=10, fps=10, width=64, height=48,
                      codec="libvpx-vp9", container="webm")  # WebM lists no frame count
    lying = VideoInfo(64, 48, Fraction(10), 0, 0.1, "vp9", "matroska")  # "one frame"
    frames = _frames(clip.read_bytes(), lying, load_settings({"video_max_frames": 5}),
                     "input.video_url")
    with pytest.raises(InvalidInputError, match="more than the limit of 5 frames"):
        list(frames)


def test_a_truncated_file_fails_at_the_end_naming_the_frames_it_had(tmp_path):
    clip = make_video(tmp_path / "c.mp4", frames=30, width=64, height=48).read_bytes()
    _, frames = decode_frames(clip[: len(clip) // 2], load_settings({}))
    with pytest.raises(InvalidInputError, match="truncated"):
        list(frames)


def test_h264_is_what_the_pinned_wheel_writes_and_an_odd_size_is_kept(tmp_path):
    assert pick_encoder() == ("libx264", "yuv420p")
    for width, height in ((64, 48), (65, 49)):
        encoder = Encoder(str(tmp_path / f"{width}.mp4"), width, height, Fraction(30000, 1001))
        for i in range(5):
            encoder.write(np.full((height, width, 3), 40 * i, dtype=np.uint8))
        encoder.close()
        frames, facts = read_video((tmp_path / f"{width}.mp4").read_bytes())
        assert (facts["codec"], facts["width"], facts["height"], facts["rate"]) == (
            "h264", width, height, Fraction(30000, 1001))
        assert len(frames) == 5 and abs(int(frames[4].mean()) - 160) < 6


def test_decoding_and_encoding_hold_one_frame_whatever_the_length(tmp_path):
    """Python's peak memory over a clip ten times longer is the same: nothing piles up."""
    import tracemalloc

    def peak(frames: int) -> int:
        clip = make_video(tmp_path / f"{frames}.mp4", frames=frames, fps=25, width=160,
                          height=120).read_bytes()
        tracemalloc.start()
        info, decoded = decode_frames(clip, load_settings({}))
        encoder = Encoder(str(tmp_path / f"out-{frames}.mp4"), info.width, info.height, info.fps)
        for frame in decoded:
            encoder.write(255 - frame)
        encoder.close()
        top = tracemalloc.get_traced_memory()[1] - len(clip)  # less the input, held whole
        tracemalloc.stop()
        assert len(read_video((tmp_path / f"out-{frames}.mp4").read_bytes())[0]) == frames
        return top

    short, long = peak(25), peak(250)
    frame = 160 * 120 * 3
    assert long < short + 4 * frame  # 250 frames held would be 225 frames more


def test_a_frame_larger_than_its_header_says_is_refused_before_it_is_decoded():
    """An MJPEG whose header says 64x48 and whose later frames are 3000x3000: the header
    passes the pixel limit, the frames must not (they would be decoded at their size)."""
    bomb = mjpeg_with_large_frames(small=4, large=2, size=(3000, 3000))
    info, frames = decode_frames(bomb, load_settings({"video_max_pixels": 1_000_000}))
    assert (info.width, info.height) == (64, 48)
    decoded = []
    with pytest.raises(InvalidInputError) as refused:
        decoded.extend(frames)
    assert len(decoded) == 4  # the small ones; FFmpeg refuses the first large one
    assert refused.value.field == "input.video_url"
    assert "after frame 4 (or its next frame has more pixels than the limit of 1000000, " \
           "POSEHOOK_VIDEO_MAX_PIXELS)" in refused.value.message
    # Under a limit that takes them, the same frames decode (scaled to the header's size).
    _, frames = decode_frames(bomb, load_settings({"video_max_pixels": 3008 * 3000}))
    assert [f.shape for f in frames] == [(48, 64, 3)] * 6


def test_a_frame_just_over_the_pixel_limit_is_refused_naming_its_size():
    bomb = mjpeg_with_large_frames(small=2, large=1, size=(1100, 1000))
    _, frames = decode_frames(bomb, load_settings({"video_max_pixels": 1_000_000}))
    with pytest.raises(InvalidInputError, match=r"frame 3 is 1100x1000 = 1100000 pixels, more "
                                                r"than the limit of 1000000 \(POSEHOOK_VIDEO_"):
        list(frames)


@pytest.mark.parametrize("container, codec", [("webm", "libvpx"), ("matroska", "libx264")])
def test_a_streamed_video_without_a_length_is_held_to_the_limits_while_decoding(
        container, codec):
    """A WebM or MKV written as a stream (MediaRecorder) lists no duration and no frame
    count: the header passes, the frames' own times are checked against the seconds."""
    clip = streamed_video(frames=30, fps=2, container=container, codec=codec)  # 15 s
    settings = load_settings({"video_max_seconds": 5})
    info, frames = decode_frames(clip, settings)
    assert (info.frames, info.duration, info.expected_frames) == (0, 0.0, 0)
    decoded = []
    with pytest.raises(InvalidInputError) as refused:
        decoded.extend(frames)
    assert refused.value.message.endswith(
        "longer than the limit of 5 s (POSEHOOK_VIDEO_MAX_SECONDS): frame 11 starts at 5.0 s")
    assert len(decoded) == 10  # 5 s of frames, none of the sixth second
    _, frames = decode_frames(clip, load_settings({"video_max_seconds": 15}))
    assert len(list(frames)) == 30  # exactly 15 s: within the limit
