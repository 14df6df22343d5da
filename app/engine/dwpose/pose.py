"""DW-LL whole-body pose: box → affine crop → run → SimCC decode → image points.

Numbers follow DWPose's ONNX annotator: padding 1.25, aspect 288:384, mean/std
normalisation in RGB, argmax per axis with score = min of the two maxima, split ratio 2.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

INPUT_SIZE = (288, 384)  # (w, h)
PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
SPLIT_RATIO = 2.0


def box_to_center_scale(box: np.ndarray, padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Return the centre (2,) and padded, aspect-fixed scale (2,) of an xyxy box."""
    x1, y1, x2, y2 = box[:4]
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    width, height = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = INPUT_SIZE[0] / INPUT_SIZE[1]
    if width > height * aspect:
        height = width / aspect
    else:
        width = height * aspect
    return center, np.array([width, height])


def warp_matrix(center: np.ndarray, scale: np.ndarray,
                output: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Return the 2x3 affine that maps the box (centre, scale) onto the model input."""
    out_w, out_h = output
    src_dir = np.array([0.0, -0.5 * scale[0]])
    dst_dir = np.array([0.0, -0.5 * out_w])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0], dst[1] = (out_w * 0.5, out_h * 0.5), np.array([out_w * 0.5, out_h * 0.5]) + dst_dir
    for points in (src, dst):
        a, b = points[0], points[1]
        d = a - b
        points[2] = b + np.array([-d[1], d[0]])
    return cv2.getAffineTransform(src, dst)


def crop(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the normalised (3, 384, 288) crop of a box, and its centre and scale."""
    center, scale = box_to_center_scale(box)
    warped = cv2.warpAffine(image, warp_matrix(center, scale), INPUT_SIZE,
                            flags=cv2.INTER_LINEAR)
    normalised = (warped - MEAN) / STD
    return normalised.transpose(2, 0, 1).astype(np.float32), center, scale


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, K, Wx) and (N, K, Wy) to locations (N, K, 2) in input pixels and scores (N, K)."""
    x_index = simcc_x.argmax(axis=2)
    y_index = simcc_y.argmax(axis=2)
    scores = np.minimum(simcc_x.max(axis=2), simcc_y.max(axis=2))
    locations = np.stack((x_index, y_index), axis=-1).astype(np.float64)
    locations[scores <= 0] = -1
    return locations / SPLIT_RATIO, scores


def to_image(locations: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Map input-pixel locations (N, K, 2) back to the image with each box's (N, 2) centre/scale."""
    size = np.array(INPUT_SIZE, dtype=np.float64)
    return locations / size * scales[:, None] + centers[:, None] - scales[:, None] / 2


class PoseModel:
    """The DW-LL session: ``__call__(image, boxes) -> (points (N, 133, 2), scores (N, 133))``."""

    def __init__(self, session: Any) -> None:
        self.session = session
        entry = session.get_inputs()[0]
        self.input_name = entry.name
        # A model exported with a fixed batch of 1 runs one person at a time.
        self.batched = not isinstance(entry.shape[0], int) or entry.shape[0] != 1

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return 133 points and scores per box, in image pixels."""
        crops, centers, scales = zip(*(crop(image, box) for box in boxes), strict=True)
        batch = np.stack(crops)
        if self.batched:
            simcc_x, simcc_y = self.session.run(None, {self.input_name: batch})[:2]
        else:
            outs = [self.session.run(None, {self.input_name: one[None]})[:2] for one in batch]
            simcc_x = np.concatenate([o[0] for o in outs])
            simcc_y = np.concatenate([o[1] for o in outs])
        locations, scores = simcc_decode(simcc_x, simcc_y)
        return to_image(locations, np.array(centers), np.array(scales)), scores
