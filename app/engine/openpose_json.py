"""PoseResult → OpenPose JSON (``people[*].pose_keypoints_2d`` …) in output pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.engine.layout import THRESHOLD
from app.engine.types import PoseResult


def flat_points(points: np.ndarray, strict: bool) -> list[float]:
    """Return [x, y, c, …] of (K, 3) points; a hidden point is 0, 0, 0 as OpenPose writes it.

    Body points are visible above the threshold (``strict``), hands and face at it, as DWPose.
    """
    out: list[float] = []
    for x, y, score in points:
        visible = score > THRESHOLD if strict else score >= THRESHOLD
        out += [round(float(x), 2), round(float(y), 2), round(float(score), 4)] if visible else [
            0.0, 0.0, 0.0]
    return out


def person_box(person: PoseResult) -> list[float]:
    """Return [x0, y0, x1, y1] around the person's certain points (every part), or 4 zeros."""
    parts = np.concatenate([person.body, person.feet, person.left_hand, person.right_hand,
                            person.face])
    sure = parts[parts[:, 2] > THRESHOLD, :2]
    if not len(sure):
        return [0.0, 0.0, 0.0, 0.0]
    return [round(float(v), 2) for v in (*sure.min(axis=0), *sure.max(axis=0))]


def person_entry(person: PoseResult) -> dict[str, Any]:
    """Return a person's ``bbox`` and ``score`` (the engine's, else the mean of the 18 body
    scores, as DWPose ranks people), the fields every keypoints format starts with."""
    score = person.body[:, 2].mean() if person.score is None else person.score
    return {"bbox": person_box(person), "score": round(float(score), 4)}


def to_openpose(people: Sequence[PoseResult], width: int, height: int, *,
                include_body: bool = True, include_hands: bool = True,
                include_face: bool = True) -> dict[str, Any]:
    """Return the OpenPose JSON document for these people on a width x height canvas.

    Each person has ``bbox`` and ``score`` (``person_entry``); a part that is not drawn is not
    listed either.
    """
    listed = []
    for person in people:
        entry = person_entry(person)
        if include_body:
            entry["pose_keypoints_2d"] = flat_points(person.body, True)
            entry["foot_keypoints_2d"] = flat_points(person.feet, True)
        if include_face:
            # OpenPose's face has 70 points: the 68, then the right and left eye (body 14, 15).
            entry["face_keypoints_2d"] = flat_points(
                np.concatenate([person.face, person.body[14:16]]), False)
        if include_hands:
            entry["hand_left_keypoints_2d"] = flat_points(person.left_hand, False)
            entry["hand_right_keypoints_2d"] = flat_points(person.right_hand, False)
        listed.append(entry)
    return {"people": listed, "canvas_width": int(width), "canvas_height": int(height)}


def from_openpose(document: dict[str, Any]) -> list[PoseResult]:
    """Read OpenPose JSON back into PoseResults (a part not listed comes back as not found)."""
    def part(values: list[float] | None, points: int) -> np.ndarray:
        if not values:
            return np.zeros((points, 3))
        return np.array(values, dtype=np.float64).reshape(points, 3)

    return [PoseResult(body=part(p.get("pose_keypoints_2d"), 18),
                       face=part(p.get("face_keypoints_2d"), 70)[:68],
                       left_hand=part(p.get("hand_left_keypoints_2d"), 21),
                       right_hand=part(p.get("hand_right_keypoints_2d"), 21),
                       feet=part(p.get("foot_keypoints_2d"), 6), score=p.get("score"))
            for p in document["people"]]
