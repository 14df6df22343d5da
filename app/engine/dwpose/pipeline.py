"""The DWPose engine: two ONNX Runtime sessions (CUDA when present) and the 133 → OpenPose map."""

from __future__ import annotations

import os

import numpy as np

from app.engine.dwpose.detect import Detector
from app.engine.dwpose.pose import PoseModel
from app.engine.types import PoseResult
from app.engine.wholebody_json import pose_from_wholebody

DETECTOR_FILE = "yolox_l.onnx"
POSE_FILE = "dw-ll_ucoco_384.onnx"


def to_openpose(points: np.ndarray, scores: np.ndarray) -> list[PoseResult]:
    """Map COCO-WholeBody (N, 133, 2) points and (N, 133) scores to OpenPose PoseResults."""
    info = np.concatenate((points, scores[..., None]), axis=-1)
    return [pose_from_wholebody(person) for person in info]


def providers() -> list[str]:
    """Return ONNX Runtime providers: CUDA first when this build and machine have it."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class DWPoseEngine:
    """YOLOX-L boxes, then DW-LL 384x288 whole-body points per person."""

    name = "dwpose"
    sees_padding = True  # YOLOX runs on the 64-padded image, as sane's DWPose does
    version = "yolox-l+dw-ll-ucoco-384"

    def __init__(self, model_dir: str, detector_file: str = DETECTOR_FILE,
                 pose_file: str = POSE_FILE) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        chosen = providers()
        self.detector = Detector(onnxruntime.InferenceSession(
            os.path.join(model_dir, detector_file), options, providers=chosen))
        self.pose = PoseModel(onnxruntime.InferenceSession(
            os.path.join(model_dir, pose_file), options, providers=chosen))
        self.providers = chosen

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Return one PoseResult per person found (none: an empty list, a black picture)."""
        boxes = self.detector(image)
        if len(boxes) == 0:
            return []
        points, scores = self.pose(image, boxes)
        return to_openpose(points, scores)
