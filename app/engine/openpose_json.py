"""PoseResult → OpenPose JSON (``people[*].pose_keypoints_2d`` …) in output pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.engine.layout import THRESHOLD
from app.engine.types import PoseResult


def _flat(points: np.ndarray, strict: bool) -> list[float]:
    """Return [x, y, c, …]; a hidden point is 0, 0, 0 as OpenPose writes it."""
    out: list[float] = []
    for x, y, score in points:
        visible = score > THRESHOLD if strict else score >= THRESHOLD
        out += [round(float(x), 2), round(float(y), 2), round(float(score), 4)] if visible else [
            0.0, 0.0, 0.0]
    return out


def to_openpose(people: Sequence[PoseResult], width: int, height: int, *,
                include_body: bool = True, include_hands: bool = True,
                include_face: bool = True) -> dict[str, Any]:
    """Return the OpenPose JSON document for these people on a width x height canvas."""
    listed = []
    for person in people:
        listed.append({
            "pose_keypoints_2d": _flat(person.body, True) if include_body else [],
            # OpenPose's face has 70 points: the 68, then the right and left eye (body 14, 15).
            "face_keypoints_2d": _flat(np.concatenate([person.face, person.body[14:16]]), False)
            if include_face else [],
            "hand_left_keypoints_2d": _flat(person.left_hand, False) if include_hands else [],
            "hand_right_keypoints_2d": _flat(person.right_hand, False) if include_hands else [],
        })
    return {"people": listed, "canvas_width": int(width), "canvas_height": int(height)}


def from_openpose(document: dict[str, Any]) -> list[PoseResult]:
    """Read OpenPose JSON back into PoseResults (feet are not in OpenPose's 2D lists)."""
    def part(values: list[float], points: int) -> np.ndarray:
        if not values:
            return np.zeros((points, 3))
        return np.array(values, dtype=np.float64).reshape(points, 3)

    return [PoseResult(body=part(p["pose_keypoints_2d"], 18),
                       face=part(p["face_keypoints_2d"], 70)[:68],
                       left_hand=part(p["hand_left_keypoints_2d"], 21),
                       right_hand=part(p["hand_right_keypoints_2d"], 21), feet=np.zeros((6, 3)))
            for p in document["people"]]
