"""SimCC whole-body pose: box → affine crop → run → SimCC decode → image points.

Numbers follow DWPose's ONNX annotator: padding 1.25, the box fixed to the model's aspect,
mean/std normalisation in RGB, argmax per axis with score = min of the two maxima. The input
size (288x384 for DWPose-l-384 and RTMW, 192x256 for the 256 models) and the SimCC split
ratio (2 for all published models) are read from the model, not assumed.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from app.engine.dwpose.detect import model_size

INPUT_SIZE = (288, 384)  # (w, h) of DWPose-l-384, used where a model's shape is symbolic
PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
SPLIT_RATIO = 2.0

Size = tuple[int, int]  # (w, h) of the model input


def box_to_center_scale(box: np.ndarray, padding: float = PADDING,
                        size: Size = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Return the centre (2,) and padded scale (2,) of an xyxy box, fixed to ``size``'s aspect."""
    x1, y1, x2, y2 = box[:4]
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    width, height = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = size[0] / size[1]
    if width > height * aspect:
        height = width / aspect
    else:
        width = height * aspect
    return center, np.array([width, height])


def warp_matrix(center: np.ndarray, scale: np.ndarray, output: Size = INPUT_SIZE) -> np.ndarray:
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


def crop(image: np.ndarray, box: np.ndarray,
         size: Size = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the normalised (3, h, w) crop of a box, and its centre and scale."""
    center, scale = box_to_center_scale(box, size=size)
    warped = cv2.warpAffine(image, warp_matrix(center, scale, size), size,
                            flags=cv2.INTER_LINEAR)
    normalised = (warped - MEAN) / STD
    return normalised.transpose(2, 0, 1).astype(np.float32), center, scale


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray,
                 split_ratio: float = SPLIT_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, K, Wx) and (N, K, Wy) to locations (N, K, 2) in input pixels and scores (N, K)."""
    x_index = simcc_x.argmax(axis=2)
    y_index = simcc_y.argmax(axis=2)
    scores = np.minimum(simcc_x.max(axis=2), simcc_y.max(axis=2))
    locations = np.stack((x_index, y_index), axis=-1).astype(np.float64)
    locations[scores <= 0] = -1
    return locations / split_ratio, scores


def to_image(locations: np.ndarray, centers: np.ndarray, scales: np.ndarray,
             size: Size = INPUT_SIZE) -> np.ndarray:
    """Map input-pixel locations (N, K, 2) back to the image with each box's (N, 2) centre/scale."""
    extent = np.array(size, dtype=np.float64)
    return locations / extent * scales[:, None] + centers[:, None] - scales[:, None] / 2


class PoseModel:
    """The pose session: ``__call__(image, boxes) -> (points (N, K, 2), scores (N, K))``."""

    def __init__(self, session: Any, size: Size = INPUT_SIZE) -> None:
        self.session = session
        entry = session.get_inputs()[0]
        self.input_name = entry.name
        height, width = model_size(entry, (size[1], size[0]))
        self.size: Size = (width, height)
        # A dynamic batch takes every person in one call; a fixed one runs in chunks of it.
        fixed = entry.shape[0]
        self.batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.batched = self.batch != 1

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run (N, 3, h, w) crops; return the SimCC x and y maps of all N."""
        step = self.batch or len(crops)
        xs, ys = [], []
        for start in range(0, len(crops), step):
            chunk = crops[start:start + step]
            count = len(chunk)
            if count < step:  # a fixed batch is filled up with blank crops, then trimmed
                chunk = np.concatenate([chunk, np.zeros((step - count, *chunk.shape[1:]),
                                                        dtype=chunk.dtype)])
            simcc_x, simcc_y = self.session.run(None, {self.input_name: chunk})[:2]
            xs.append(simcc_x[:count])
            ys.append(simcc_y[:count])
        return np.concatenate(xs), np.concatenate(ys)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the model's points and scores per box, in image pixels."""
        crops, centers, scales = zip(*(crop(image, box, self.size) for box in boxes),
                                     strict=True)
        simcc_x, simcc_y = self._run(np.stack(crops))
        locations, scores = simcc_decode(simcc_x, simcc_y, simcc_x.shape[2] / self.size[0])
        return to_image(locations, np.array(centers), np.array(scales), self.size), scores
