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
           "KEYPOINTS_FORMATS"]

OPTION_LIMITS = {"detect_resolution": (0, 2048), "image_resolution": (64, 4096)}
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


def _resize(image: np.ndarray, short_side: int) -> np.ndarray:
    """Return the image scaled so its short side is ``short_side`` (cubic up, area down)."""
    import cv2

    height, width = image.shape[:2]
    k = short_side / min(height, width)
    size = (max(1, round(width * k)), max(1, round(height * k)))
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)


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


def render(engine: Engine, image: np.ndarray, options: Mapping[str, Any]) -> Rendering:
    """Detect and draw at ``detect_resolution``, then resize to ``image_resolution``.

    As DWPose's annotators do: the picture is drawn on the (64-padded) detection image, the
    padding cropped, and the picture resized to the output size with INTER_LINEAR, so sticks
    and dots grow with the output. The keypoints are given in output pixels, as OpenPose JSON
    or, with ``keypoints_format`` ``coco_wholebody``, as 133 COCO-WholeBody points a person.
    """
    import cv2

    height, width = image.shape[:2]
    detect = options.get("detect_resolution")
    detect = 512 if detect is None else int(detect)
    seen = _resize(image, detect) if detect else image
    seen_h, seen_w = seen.shape[:2]
    padded = _pad64(seen)
    # Only an engine that pads for its own detector (DWPose's YOLOX, as sane does) sees the
    # padding; MediaPipe sees the real picture: edge-padding smears the border into bands that
    # made it lose every person on some photos. The drawing is on the padded size either way.
    people = engine(padded if getattr(engine, "sees_padding", False) else seen)
    target = options.get("image_resolution")
    if target:
        k = int(target) / min(height, width)
        out_w, out_h = max(1, round(width * k)), max(1, round(height * k))
    else:
        out_w, out_h = width, height
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
