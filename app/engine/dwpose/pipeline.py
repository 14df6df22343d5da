"""The DWPose engine: a YOLOX detector and a SimCC whole-body model on ONNX Runtime.

Which models: names from ``registry.MODELS`` (DWPose t/s/m/l, RTMW l/x; YOLOX l/m/tiny).
Where they run: the best execution provider this onnxruntime build has, in the order of
``PROVIDER_ORDER`` (CPU last, always), and the providers the sessions really took are named
in the engine's version, so the logs, ``/readyz`` and every result's ``engine`` say it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from app.engine.dwpose.detect import Detector
from app.engine.dwpose.pose import PoseModel
from app.engine.dwpose.registry import DEFAULT_DETECTOR, DEFAULT_POSE, spec
from app.engine.types import PoseResult
from app.engine.wholebody_json import pose_from_wholebody

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                  "OpenVINOExecutionProvider", "CoreMLExecutionProvider",
                  "DmlExecutionProvider", "CPUExecutionProvider")
# Short names for the engine's version string.
PROVIDER_NAMES = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda",
                  "OpenVINOExecutionProvider": "openvino", "CoreMLExecutionProvider": "coreml",
                  "DmlExecutionProvider": "directml", "CPUExecutionProvider": "cpu"}


def to_openpose(points: np.ndarray, scores: np.ndarray) -> list[PoseResult]:
    """Map COCO-WholeBody (N, 133, 2) points and (N, 133) scores to OpenPose PoseResults."""
    info = np.concatenate((points, scores[..., None]), axis=-1)
    return [pose_from_wholebody(person) for person in info]


def choose_providers(available: Sequence[str]) -> list[str]:
    """Return the providers to ask for, best first, from those a build has; CPU always last."""
    return [p for p in PROVIDER_ORDER if p in available or p == "CPUExecutionProvider"]


def providers() -> list[str]:
    """Return the providers to ask this onnxruntime for."""
    import onnxruntime

    return choose_providers(onnxruntime.get_available_providers())


def with_options(chosen: Sequence[str], model_dir: str) -> list[tuple[str, dict[str, str]]]:
    """Return (provider, options) pairs: TensorRT keeps the engines it builds (minutes per
    model) in ``model_dir``/tensorrt-cache, so a restarted worker does not build them again."""
    cache = {"trt_engine_cache_enable": "True",
             "trt_engine_cache_path": os.path.join(model_dir, "tensorrt-cache")}
    return [(p, cache if p == "TensorrtExecutionProvider" else {}) for p in chosen]


class DWPoseEngine:
    """YOLOX person boxes, then whole-body points for all people of a picture at once."""

    name = "dwpose"
    sees_padding = True  # YOLOX runs on the 64-padded image, as sane's DWPose does

    def __init__(self, model_dir: str, detector: str = DEFAULT_DETECTOR,
                 pose: str = DEFAULT_POSE) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        chosen = with_options(providers(), model_dir)
        det, body = spec(detector, "detector"), spec(pose, "pose")
        det_session = onnxruntime.InferenceSession(
            os.path.join(model_dir, det.file), options, providers=chosen)
        pose_session = onnxruntime.InferenceSession(
            os.path.join(model_dir, body.file), options, providers=chosen)
        self.detector = Detector(det_session, det.input_size[::-1])
        self.pose = PoseModel(pose_session, body.input_size)
        # What the sessions really run on (a CUDA build without a GPU falls back to CPU).
        self.providers = list(dict.fromkeys(det_session.get_providers()
                                            + pose_session.get_providers()))
        on = "+".join(PROVIDER_NAMES.get(p, p) for p in self.providers)
        self.version = f"{detector}+{pose}@{on}"

    def warm(self) -> None:
        """Run both models once on a blank picture, so the first request pays no start-up."""
        height, width = self.detector.size
        blank = np.zeros((height, width, 3), dtype=np.uint8)
        self.detector(blank)
        self.pose(blank, np.array([[0.0, 0.0, width / 2, height], [width / 2, 0, width, height]]))

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Return one PoseResult per person found (none: an empty list, a black picture)."""
        boxes = self.detector(image)
        if len(boxes) == 0:
            return []
        points, scores = self.pose(image, boxes)
        return to_openpose(points, scores)
