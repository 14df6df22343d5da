"""YOLOX person detector: letterbox → run → grid decode → NMS → person boxes.

Numbers follow DWPose's ONNX annotator: input of raw 0-255 values (640x640 for YOLOX-L and -m,
416x416 for -tiny: read from the model), pad 114 pasted top-left, strides 8/16/32, score =
obj x class, class-aware NMS at IoU 0.45 over scores > 0.1, then persons (class 0) above 0.3.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

INPUT_SIZE = (640, 640)
STRIDES = (8, 16, 32)
NMS_IOU = 0.45
SCORE_MIN = 0.1
PERSON_MIN = 0.3


def letterbox(image: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """Return the (1, 3, H, W) float32 blob of the image scaled into ``size``, and the ratio."""
    height, width = image.shape[:2]
    ratio = min(size[0] / height, size[1] / width)
    resized = cv2.resize(image, (int(width * ratio), int(height * ratio)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    canvas = np.full((size[0], size[1], 3), 114, dtype=np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32), ratio


def grid_decode(output: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Decode raw (A, 5 + C) predictions to boxes in input pixels: (A, 4) cx, cy, w, h."""
    grids, strides = [], []
    for stride in STRIDES:
        rows, cols = size[0] // stride, size[1] // stride
        xs, ys = np.meshgrid(np.arange(cols), np.arange(rows))
        grids.append(np.stack((xs, ys), 2).reshape(-1, 2))
        strides.append(np.full((rows * cols, 1), stride))
    grid = np.concatenate(grids, 0)
    stride = np.concatenate(strides, 0)
    centers = (output[:, :2] + grid) * stride
    sizes = np.exp(output[:, 2:4]) * stride
    return np.concatenate((centers, sizes), 1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy NMS over (N, 4) xyxy boxes with the +1 area convention; return kept indices."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        first = int(order[0])
        keep.append(first)
        xx1 = np.maximum(x1[first], x1[order[1:]])
        yy1 = np.maximum(y1[first], y1[order[1:]])
        xx2 = np.minimum(x2[first], x2[order[1:]])
        yy2 = np.minimum(y2[first], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        overlap = inter / (areas[first] + areas[order[1:]] - inter)
        order = order[1:][overlap <= iou]
    return keep


def multiclass_nms(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Return (D, 6) detections x1, y1, x2, y2, score, class after per-class NMS."""
    found = []
    for cls in range(scores.shape[1]):
        mask = scores[:, cls] > SCORE_MIN
        if not mask.any():
            continue
        cls_boxes, cls_scores = boxes[mask], scores[mask, cls]
        for index in nms(cls_boxes, cls_scores, NMS_IOU):
            found.append([*cls_boxes[index], cls_scores[index], cls])
    return np.array(found, dtype=np.float64).reshape(-1, 6)


def person_boxes(output: np.ndarray, ratio: float,
                 size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Return (N, 4) xyxy person boxes in image pixels from the raw (1, A, 85) output."""
    predictions = output[0]
    decoded = grid_decode(predictions, size)
    scores = predictions[:, 4:5] * predictions[:, 5:]
    xyxy = np.concatenate((decoded[:, :2] - decoded[:, 2:] / 2,
                           decoded[:, :2] + decoded[:, 2:] / 2), 1) / ratio
    dets = multiclass_nms(xyxy, scores)
    keep = (dets[:, 4] > PERSON_MIN) & (dets[:, 5] == 0)
    return dets[keep, :4]


def model_size(entry: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    """Return the (height, width) of an NCHW model input, or ``fallback`` where it is symbolic."""
    height, width = entry.shape[2:4]
    return (height if isinstance(height, int) and height > 0 else fallback[0],
            width if isinstance(width, int) and width > 0 else fallback[1])


class Detector:
    """The YOLOX session: ``__call__(image) -> (N, 4)`` person boxes."""

    def __init__(self, session: Any, size: tuple[int, int] = INPUT_SIZE) -> None:
        self.session = session
        entry = session.get_inputs()[0]
        self.input_name = entry.name
        self.size = model_size(entry, size)  # (h, w)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Find people in an (H, W, 3) RGB image."""
        blob, ratio = letterbox(image, self.size)
        output = self.session.run(None, {self.input_name: blob})[0]
        return person_boxes(output, ratio, self.size)
