"""PoseResult ↔ COCO-WholeBody keypoints JSON: 133 points a person, in output pixels.

The order is COCO-WholeBody's (as mmpose's ``coco_wholebody`` dataset and DWPose's models
have it): 17 body points (nose, left/right eye, ear, shoulder, elbow, wrist, hip, knee, ankle),
6 feet, 68 face (iBUG order), 21 left hand, 21 right hand. OpenPose's neck is not among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.engine.layout import COCO_TO_BODY, WHOLEBODY_PARTS, body_from_coco
from app.engine.openpose_json import flat_points, person_entry
from app.engine.types import PoseResult

FORMAT = "coco_wholebody"
POINTS = 133
# Body and feet are visible above the threshold, face and hands at it (as in OpenPose JSON).
_STRICT = {"body": True, "feet": True, "face": False, "left_hand": False, "right_hand": False}
# Which parts each include_* option governs.
_OPTION = {"body": "include_body", "feet": "include_body", "face": "include_face",
           "left_hand": "include_hands", "right_hand": "include_hands"}


def wholebody_points(person: PoseResult) -> np.ndarray:
    """Return the person's (133, 3) points in COCO-WholeBody order."""
    points = np.zeros((POINTS, 3), dtype=np.float64)
    for row, source in enumerate(COCO_TO_BODY):
        if source is not None:
            points[source] = person.body[row]
    for part, (start, length) in WHOLEBODY_PARTS.items():
        if part != "body":
            points[start:start + length] = getattr(person, part)
    return points


def to_wholebody(people: Sequence[PoseResult], width: int, height: int, *,
                 include_body: bool = True, include_hands: bool = True,
                 include_face: bool = True) -> dict[str, Any]:
    """Return the COCO-WholeBody document for these people on a width x height canvas.

    Each person has ``bbox``, ``score`` and ``keypoints`` (133 x [x, y, score]); the points of
    a part not drawn are 0, 0, 0 like points not found, and ``parts`` names the parts given.
    """
    chosen = {"include_body": include_body, "include_hands": include_hands,
              "include_face": include_face}
    parts = [part for part in WHOLEBODY_PARTS if chosen[_OPTION[part]]]
    listed = []
    for person in people:
        points = wholebody_points(person)
        flat = [0.0] * (POINTS * 3)
        for part in parts:
            start, length = WHOLEBODY_PARTS[part]
            flat[3 * start:3 * (start + length)] = flat_points(points[start:start + length],
                                                               _STRICT[part])
        listed.append({**person_entry(person), "keypoints": flat})
    return {"format": FORMAT, "parts": parts, "people": listed, "canvas_width": int(width),
            "canvas_height": int(height)}


def from_wholebody(document: dict[str, Any]) -> list[PoseResult]:
    """Read a COCO-WholeBody document back into PoseResults (the neck made from the shoulders)."""
    return [pose_from_wholebody(np.array(entry["keypoints"], dtype=np.float64).reshape(POINTS, 3)
                                )._replace(score=entry.get("score"))
            for entry in document["people"]]


def pose_from_wholebody(points: np.ndarray) -> PoseResult:
    """Return the PoseResult of (133, 3) COCO-WholeBody points: the body as DWPose remaps it
    (the neck made from the shoulders), the other parts the 133's slices."""
    parts = {part: points[start:start + length].copy()
             for part, (start, length) in WHOLEBODY_PARTS.items() if part != "body"}
    return PoseResult(body=body_from_coco(points), **parts)

