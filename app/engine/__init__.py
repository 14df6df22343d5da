"""Pose engines: numpy in, PoseResult out, and the DWPose-style picture. No service imports.

``load_engine(name)`` picks and loads an engine (cached; backends imported lazily);
``render(engine, image, options)`` resizes, runs, draws and returns a Rendering.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from app.engine.types import PARTS, Engine, PoseResult

__all__ = ["Engine", "PoseResult", "Rendering", "load_engine", "render", "OPTION_LIMITS",
           "KEYPOINTS_FORMATS", "MAX_DETECT_SIDE", "MAX_ASPECT", "detect_size", "output_size"]

OPTION_LIMITS = {"detect_resolution": (0, 2048), "image_resolution": (64, 4096)}
MAX_DETECT_SIDE = 8192
"""The longest side an engine is given: ``detect_resolution`` sets the short side, but a
thin picture scaled so would be tens of thousands of pixels long, and MediaPipe's OpenCV
aborts the process (``remap``: sides under 32767) on it. Past this the scale is lowered."""
MIN_DETECT_SIDE = 16
MAX_ASPECT = MAX_DETECT_SIDE // MIN_DETECT_SIDE
"""The thinnest picture worth posing (long side : short side, 512:1): anything thinner is
less than ``MIN_DETECT_SIDE`` pixels across at ``MAX_DETECT_SIDE`` long, where no engine
finds a person. The service refuses such inputs before they reach an engine."""
KEYPOINTS_FORMATS = ("openpose", "coco_wholebody")  # the first is the default
DWPOSE_MODELS = ("yolox-l", "dwpose-l-384")  # the dwpose engine's default detector and pose

_cache: dict[tuple[str, ...], Engine] = {}
_lock = threading.Lock()


class Rendering(NamedTuple):
    """What ``render`` returns: the picture, the OpenPose JSON and who made them."""

    image: np.ndarray
    keypoints: dict[str, Any]
    engine: str
    engine_version: str


def _dwpose_files(models: tuple[str, str]) -> list[str]:
    from app.engine.dwpose.registry import spec

    return [spec(models[0], "detector").file, spec(models[1], "pose").file]


def has_dwpose_weights(model_dir: str | None, models: tuple[str, str] = DWPOSE_MODELS) -> bool:
    """Return True when the (detector, pose) models' ONNX files are both in ``model_dir``."""
    return bool(model_dir) and all(os.path.isfile(os.path.join(model_dir, f))
                                   for f in _dwpose_files(models))


def load_engine(name: str = "auto", model_dir: str | None = None,
                models: tuple[str, str] = DWPOSE_MODELS) -> Engine:
    """Return a loaded engine: ``auto`` takes dwpose when its weights are there, else mediapipe.

    ``models`` names the dwpose engine's detector and pose model (app.engine.dwpose.registry).
    """
    if name == "auto":
        name = "dwpose" if has_dwpose_weights(model_dir, models) else "mediapipe"
    key = (name, model_dir or "", *models)
    with _lock:
        if key not in _cache:
            if name == "mediapipe":
                from app.engine.mediapipe import MediaPipeEngine

                _cache[key] = MediaPipeEngine()
            elif name == "mediapipe-holistic":
                from app.engine.holistic import HolisticEngine

                _cache[key] = HolisticEngine()
            elif name == "dwpose":
                from app.engine.dwpose.pipeline import DWPoseEngine
                from app.engine.dwpose.weights import verify_weights

                if not has_dwpose_weights(model_dir, models):
                    raise FileNotFoundError(
                        f"DWPose weights {', '.join(_dwpose_files(models))} not found in "
                        f"{model_dir!r}: run 'flask models download' or set DWPOSE_MODEL_DIR")
                # Files the download command installed are checked against what it recorded.
                verify_weights(model_dir, _dwpose_files(models), published=False)
                _cache[key] = DWPoseEngine(model_dir, *models)
            else:
                raise ValueError(f"unknown engine {name!r}")
        return _cache[key]


def _fit(width: int, height: int, k: float, max_side: int | None,
         max_pixels: int | None = None) -> tuple[int, int]:
    """Return (width, height) scaled by ``k``, lowered until the long side is at most
    ``max_side`` and the area at most ``max_pixels`` (each side at least 1)."""
    if max_side:
        k = min(k, max_side / max(width, height))
    if max_pixels:
        k = min(k, (max_pixels / (width * height)) ** 0.5)
    size = max(1, round(width * k)), max(1, round(height * k))
    if max_side and max(size) > max_side or max_pixels and size[0] * size[1] > max_pixels:
        size = max(1, int(width * k)), max(1, int(height * k))  # rounding went one over
    return size


def detect_size(width: int, height: int, detect_resolution: int | None) -> tuple[int, int]:
    """Return the size the engine sees: the short side at ``detect_resolution`` (None: 512,
    0: the picture's own), the long side at most ``MAX_DETECT_SIDE``."""
    short = 512 if detect_resolution is None else int(detect_resolution)
    return _fit(width, height, short / min(width, height) if short else 1.0, MAX_DETECT_SIDE)


def output_size(width: int, height: int, image_resolution: int | None, *,
                max_side: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """Return the picture's size: the short side at ``image_resolution`` (None or 0: the
    input's size), lowered to fit ``max_side`` and ``max_pixels`` when they are given."""
    k = int(image_resolution) / min(width, height) if image_resolution else 1.0
    return _fit(width, height, k, max_side, max_pixels)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Return the image at ``size`` (width, height): cubic up, area down."""
    import cv2

    height, width = image.shape[:2]
    if size == (width, height):
        return image
    up = size[0] * size[1] > width * height
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if up else cv2.INTER_AREA)


def _scaled(person: PoseResult, sx: float, sy: float) -> PoseResult:
    scale = np.array([sx, sy, 1.0])
    return person._replace(**{part: getattr(person, part) * scale for part in PARTS})


def _pad64(image: np.ndarray) -> np.ndarray:
    """Return the image edge-padded at the bottom and right to multiples of 64 (as sane does)."""
    height, width = image.shape[:2]
    pad_h, pad_w = -height % 64, -width % 64
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def render(engine: Engine, image: np.ndarray, options: Mapping[str, Any], *,
           max_side: int | None = None, max_pixels: int | None = None) -> Rendering:
    """Detect and draw at ``detect_resolution``, then resize to ``image_resolution``.

    The engine never sees a side over ``MAX_DETECT_SIDE`` (``detect_size``); the picture is
    made smaller than asked when it would be over ``max_side`` or ``max_pixels``
    (``output_size``: what its encoder and the service take).

    As DWPose's annotators do: the picture is drawn on the (64-padded) detection image, the
    padding cropped, and the picture resized to the output size with INTER_LINEAR, so sticks
    and dots grow with the output. The keypoints are given in output pixels, as OpenPose JSON
    or, with ``keypoints_format`` ``coco_wholebody``, as 133 COCO-WholeBody points a person.
    """
    import cv2

    height, width = image.shape[:2]
    seen = _resize(image, detect_size(width, height, options.get("detect_resolution")))
    seen_h, seen_w = seen.shape[:2]
    padded = _pad64(seen)
    # Only an engine that pads for its own detector (DWPose's YOLOX, as sane does) sees the
    # padding; MediaPipe sees the real picture: edge-padding smears the border into bands that
    # made it lose every person on some photos. The drawing is on the padded size either way.
    people = engine(padded if getattr(engine, "sees_padding", False) else seen)
    out_w, out_h = output_size(width, height, options.get("image_resolution"),
                               max_side=max_side, max_pixels=max_pixels)
    from app.engine.draw import MODES, draw_masks, draw_pose
    from app.engine.openpose_json import to_openpose
    from app.engine.wholebody_json import to_wholebody

    # The mode says what is drawn (full-pose by default); include_* leave parts out of it.
    kind, drawn = MODES[options.get("draw_mode") or "full-pose"]
    parts = {f"include_{part}": part in drawn and options.get(f"include_{part}") is not False
             for part in ("body", "hands", "face")}
    if kind == "mask":
        parts["include_body"] = False
        picture = draw_masks(people, *padded.shape[:2], include_hands=parts["include_hands"],
                             include_face=parts["include_face"])[:seen_h, :seen_w]
    else:
        picture = draw_pose(people, *padded.shape[:2], **parts)[:seen_h, :seen_w]
    if (out_w, out_h) != (seen_w, seen_h):
        picture = cv2.resize(picture, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    people = [_scaled(p, out_w / seen_w, out_h / seen_h) for p in people]
    keypoints_format = options.get("keypoints_format") or KEYPOINTS_FORMATS[0]
    if keypoints_format not in KEYPOINTS_FORMATS:
        raise ValueError(f"keypoints_format must be one of {', '.join(KEYPOINTS_FORMATS)}")
    document = (to_wholebody if keypoints_format == "coco_wholebody" else to_openpose)(
        people, out_w, out_h, **parts)
    return Rendering(picture, document, engine.name, engine.version)
