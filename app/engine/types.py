"""Engine result types: one PoseResult per person, in the OpenPose/DWPose layout."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class PoseResult(NamedTuple):
    """One person's keypoints as (K, 3) float arrays of x, y (pixels) and score.

    body (18, 3) in OpenPose order with the neck; left_hand and right_hand (21, 3) in
    OpenPose hand order; face (68, 3) in the iBUG-68 order; feet (6, 3) in COCO-WholeBody
    order (left big toe, left small toe, left heel, right big toe, right small toe, right heel).
    "Left" is the subject's left. A point that was not found has score 0. ``score`` is how
    sure the engine is that this is a person (reported in the JSON, and what COCO-style
    evaluation ranks people by; the engines list people largest first); None when the engine
    has no such measure, and the mean of the body scores stands in (as DWPose scores people).
    """

    body: np.ndarray
    left_hand: np.ndarray
    right_hand: np.ndarray
    face: np.ndarray
    feet: np.ndarray
    score: float | None = None


PARTS = ("body", "left_hand", "right_hand", "face", "feet")  # the point arrays of a PoseResult


def empty_part(points: int) -> np.ndarray:
    """Return a (points, 3) array of not-found points."""
    return np.zeros((points, 3), dtype=np.float64)


class Engine(Protocol):
    """A pose engine: an RGB image in, one PoseResult per person out."""

    name: str
    version: str

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Find people in an (H, W, 3) uint8 RGB image; coordinates in its pixels."""
