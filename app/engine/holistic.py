"""MediaPipe Holistic (legacy solutions API), one person per pass, mapped onto DWPose's layout.

Kept beside the v2 engine as ``mediapipe-holistic``: on the development photos it is about
as accurate on bodies and several times faster for one person (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from app.engine.layout import MP_FACE_TO_68, THRESHOLD
from app.engine.mediapipe import MIN_BODY_POINTS, map_pose
from app.engine.types import PoseResult, empty_part


def _landmarks(found: Any, width: int, height: int, with_visibility: bool) -> np.ndarray:
    """Return (N, 3) pixel points; points off the image get score 0."""
    points = np.array([(lm.x * width, lm.y * height,
                        lm.visibility if with_visibility else 1.0) for lm in found.landmark],
                      dtype=np.float64)
    outside = ((points[:, 0] < 0) | (points[:, 0] >= width) |
               (points[:, 1] < 0) | (points[:, 1] >= height))
    points[outside, 2] = 0.0
    return points



# Holistic sees one person per pass; after each pass the person found is blanked out and the
# picture goes round again, until nobody is left or this many were found.
MAX_PEOPLE = 4
MARGIN = 0.15  # the blanked box grows by this share of the person's size on each side


def person_box(person: PoseResult, margin: float, width: int, height: int) -> tuple[int, ...]:
    """Return (x0, y0, x1, y1): the certain points of a person, grown by ``margin``, clipped."""
    parts = np.concatenate([person.body, person.feet, person.left_hand, person.right_hand,
                            person.face])
    sure = parts[parts[:, 2] > THRESHOLD, :2]
    (x0, y0), (x1, y1) = sure.min(axis=0), sure.max(axis=0)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)),
            min(width, int(np.ceil(x1 + dx)) + 1), min(height, int(np.ceil(y1 + dy)) + 1))


class HolisticEngine:
    """Holistic in static-image mode, complexity 1 (the only pose model the wheel ships)."""

    name = "mediapipe-holistic"

    def __init__(self, max_people: int = MAX_PEOPLE) -> None:
        import mediapipe

        self.version = f"holistic-{mediapipe.__version__}"
        self.max_people = max_people
        self._holistic = mediapipe.solutions.holistic.Holistic(
            static_image_mode=True, model_complexity=1, refine_face_landmarks=False,
            enable_segmentation=False)
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Return the people in an (H, W, 3) RGB image, most prominent first."""
        height, width = image.shape[:2]
        work = np.array(image, dtype=np.uint8, copy=True, order="C")
        people: list[PoseResult] = []
        boxes: list[tuple[int, ...]] = []
        while len(people) < self.max_people:
            person = self._one(work, width, height)
            if person is None or np.count_nonzero(person.body[:, 2] > THRESHOLD) < MIN_BODY_POINTS:
                break
            box = person_box(person, MARGIN, width, height)
            centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if any(b[0] <= centre_x < b[2] and b[1] <= centre_y < b[3] for b in boxes):
                break  # the same person again, seen through the blanked box
            people.append(person)
            boxes.append(box)
            work[box[1]:box[3], box[0]:box[2]] = 0
        return people

    def _one(self, image: np.ndarray, width: int, height: int) -> PoseResult | None:
        """Run Holistic once; return the person it found, or None."""
        with self._lock:  # one graph, one caller at a time
            found = self._holistic.process(image)
        if found.pose_landmarks is None:
            return None
        body, feet = map_pose(_landmarks(found.pose_landmarks, width, height, True))
        hands = []
        for part in (found.left_hand_landmarks, found.right_hand_landmarks):
            hands.append(_landmarks(part, width, height, False) if part else empty_part(21))
        face = empty_part(68)
        if found.face_landmarks is not None:
            face = _landmarks(found.face_landmarks, width, height, False)[MP_FACE_TO_68]
        return PoseResult(body=body, left_hand=hands[0], right_hand=hands[1], face=face,
                          feet=feet)

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._holistic.close()


