"""MediaPipe engines (their models ship in the pinned wheel) mapped onto the DWPose layout.

``MediaPipeEngine`` (v2, the default): the Tasks PoseLandmarker finds up to ``max_people``
at once, on the picture and on two overlapping halves of it (small people); hands and face
are then looked for in crops around each person's wrists and head with HandLandmarker and
the legacy FaceMesh. The legacy Holistic engine is in ``app.engine.holistic``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.layout import (
    MP_FACE_TO_68,
    MP_POSE_TO_BODY,
    MP_POSE_TO_FEET,
    MP_SHOULDERS,
    THRESHOLD,
    neck,
)
from app.engine.mp_people import merge, person_score, pose_score, tiles, unexplained
from app.engine.types import PoseResult, empty_part


def map_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map (33, 3) MediaPipe pose points to OpenPose body (18, 3) and feet (6, 3)."""
    body = empty_part(18)
    for index, source in enumerate(MP_POSE_TO_BODY):
        if source is not None:
            body[index] = pose[source]
    body[1] = neck(pose[MP_SHOULDERS[0]], pose[MP_SHOULDERS[1]])
    return body, pose[MP_POSE_TO_FEET].copy()



MIN_BODY_POINTS = 4  # fewer certain body points than this is not a person

# Pose-33 indices of each side's arm and hand (subject's left, then right).
_ARMS = {"left": (13, 15, 17, 19), "right": (14, 16, 18, 20)}  # elbow, wrist, pinky, index
_HEAD = (0, 2, 5, 7, 8, 9, 10)  # nose, eyes, ears, mouth corners
CROP = 256  # hand and face crops are scaled to this square before their landmarker sees them


def _points(landmarks: Any, width: int, height: int) -> np.ndarray:
    """Return (N, 3) pixel points from Tasks landmarks, scored by visibility, 0 off the image."""
    points = np.array([(lm.x * width, lm.y * height, lm.visibility or 0.0) for lm in landmarks],
                      dtype=np.float64)
    outside = ((points[:, 0] < 0) | (points[:, 0] >= width) |
               (points[:, 1] < 0) | (points[:, 1] >= height))
    points[outside, 2] = 0.0
    return points


def hand_square(pose: np.ndarray, side: str) -> tuple[float, float, float]:
    """Return (centre x, centre y, side) of a square holding one hand, from the pose's arm."""
    elbow, wrist, pinky, index = (pose[i, :2] for i in _ARMS[side])
    knuckles = (pinky + index) / 2
    reach = float(np.linalg.norm(knuckles - wrist))
    centre = wrist + (knuckles - wrist)  # the knuckles: about the middle of the whole hand
    size = max(4.0 * reach, 0.9 * float(np.linalg.norm(wrist - elbow)), 16.0)
    return float(centre[0]), float(centre[1]), size


def face_square(pose: np.ndarray) -> tuple[float, float, float]:
    """Return (centre x, centre y, side) of a square holding the face, from the pose's head."""
    nose, eye_l, eye_r, ear_l, ear_r, mouth_l, mouth_r = (pose[i, :2] for i in _HEAD)
    ears = float(np.linalg.norm(ear_l - ear_r))
    eyes_to_mouth = float(np.linalg.norm((eye_l + eye_r) / 2 - (mouth_l + mouth_r) / 2))
    size = max(2.2 * ears, 5.0 * eyes_to_mouth, 16.0)
    return float(nose[0]), float(nose[1]), size


def _crop(image: np.ndarray, square: tuple[float, float, float]) -> tuple[np.ndarray, float,
                                                                         float, float]:
    """Return the square (black outside the image) at CROP x CROP, and its x0, y0, pixel size."""
    import cv2

    cx, cy, size = square
    x0, y0, k = cx - size / 2, cy - size / 2, CROP / size
    warp = np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], dtype=np.float64)
    crop = cv2.warpAffine(image, warp, (CROP, CROP), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, x0, y0, size / CROP


class MediaPipeEngine:
    """PoseLandmarker for every person at once, then hands and face per person, in crops."""

    name = "mediapipe"

    def __init__(self, max_people: int = 10, hands: bool = True, face: bool = True,
                 pose_confidence: float = 0.3, hand_confidence: float = 0.5,
                 face_confidence: float = 0.5, tiles: bool = True, min_score: float = 0.1,
                 cache_dir: str | None = None) -> None:
        import mediapipe
        from mediapipe.tasks.python import BaseOptions, vision

        from app.engine.mp_tasks import bundle_path

        self.version = f"tasks-{mediapipe.__version__}"
        self.max_people, self.tiles, self.min_score = max_people, tiles, min_score
        self.hand_confidence, self.face_confidence = hand_confidence, face_confidence
        folder = None if cache_dir is None else Path(cache_dir)

        def options(bundle: str) -> Any:
            return BaseOptions(model_asset_path=str(bundle_path(bundle, folder)))

        self._pose = vision.PoseLandmarker.create_from_options(vision.PoseLandmarkerOptions(
            base_options=options("pose_landmarker"), num_poses=max_people,
            min_pose_detection_confidence=pose_confidence,
            min_pose_presence_confidence=pose_confidence))
        self._hands = vision.HandLandmarker.create_from_options(vision.HandLandmarkerOptions(
            base_options=options("hand_landmarker"), num_hands=2,
            min_hand_detection_confidence=hand_confidence,
            min_hand_presence_confidence=hand_confidence)) if hands else None
        # The face mesh through FaceLandmarker with the wheel's face_landmark.tflite bundled
        # loads and runs but returns a scrambled mesh (seen on the development photos), so the
        # face is the legacy FaceMesh graph (the same models) on the head crop.
        self._face = mediapipe.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=face_confidence) if face else None
        self._image = mediapipe.Image
        self._srgb = mediapipe.ImageFormat.SRGB
        self._lock = threading.Lock()

    def _wrap(self, image: np.ndarray) -> Any:
        return self._image(image_format=self._srgb, data=np.ascontiguousarray(image, np.uint8))

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Return the people in an (H, W, 3) RGB image, largest first."""
        height, width = image.shape[:2]
        with self._lock:  # the graphs are not for two callers at once
            poses = self._poses(image, (0, 0, width, height))
            if self.tiles:
                poses += self._look_again(image, poses)
            poses = [pose for pose in merge(poses) if pose_score(pose) >= self.min_score]
            people = []
            for pose in poses[:self.max_people]:
                body, feet = map_pose(pose)
                left, right = self._hands_of(image, pose)
                face = self._face_of(image, pose)
                people.append(PoseResult(body=body, left_hand=left, right_hand=right,
                                         face=face, feet=feet, score=person_score(pose)))
        return sorted(people, key=_extent, reverse=True)

    def _look_again(self, image: np.ndarray, poses: list[np.ndarray]) -> list[np.ndarray]:
        """Return the poses found in overlapping square tiles (small people are larger there to
        the 224 px detector), each level of tiles smaller, only over what no one found covers."""
        height, width = image.shape[:2]
        found = list(poses)
        more: list[np.ndarray] = []
        for share in TILE_LEVELS:
            side = share * min(width, height)
            if side >= 0.9 * max(width, height):
                continue  # a square picture: this tile is the whole picture again
            for tile in tiles(width, height, side):
                if len(found) >= 2 * self.max_people:
                    return more
                if unexplained(tile, found) >= UNEXPLAINED:
                    seen = self._poses(image, tile)
                    found += seen
                    more += seen
        return more

    def _poses(self, image: np.ndarray, tile: tuple[int, int, int, int]) -> list[np.ndarray]:
        """Return the (33, 3) poses PoseLandmarker finds in a tile (x, y, w, h) of the picture,
        in the pixels of the whole picture."""
        x, y, w, h = tile
        found = self._pose.detect(self._wrap(image[y:y + h, x:x + w]))
        poses = []
        for landmarks in found.pose_landmarks:
            pose = _points(landmarks, w, h)
            pose[:, 0] += x
            pose[:, 1] += y
            if np.count_nonzero(map_pose(pose)[0][:, 2] > THRESHOLD) >= MIN_BODY_POINTS:
                poses.append(pose)
        return poses

    def _hands_of(self, image: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the (21, 3) left and right hands; a hand not found (or phantom) is all 0."""
        hands = {"left": empty_part(21), "right": empty_part(21)}
        if self._hands is None:
            return hands["left"], hands["right"]
        misses = {}
        for side, (_, wrist, _, _) in _ARMS.items():
            seen = pose[wrist, 2]
            if seen < self.hand_confidence:
                continue  # an arm the pose model does not see: any hand there is a guess
            square = hand_square(pose, side)
            crop, x0, y0, pixel = _crop(image, square)
            result = self._hands.detect(self._wrap(crop))
            best, miss = None, np.inf
            for landmarks in result.hand_landmarks:
                points = np.array([(x0 + lm.x * CROP * pixel, y0 + lm.y * CROP * pixel, seen)
                                   for lm in landmarks])
                distance = float(np.linalg.norm(points[0, :2] - pose[wrist, :2]))
                if distance < miss:
                    best, miss = points, distance
            # The hand found must start at this arm's wrist, not at the other hand in the crop.
            if best is not None and miss < 0.35 * square[2]:
                hands[side], misses[side] = best, miss
        if len(misses) == 2:  # one real hand found from both wrists: keep the nearer wrist's
            left, right = hands["left"], hands["right"]
            spread = max(np.ptp(left[:, 0]), np.ptp(left[:, 1]), 1.0)
            if np.mean(np.linalg.norm(left[:, :2] - right[:, :2], axis=1)) < 0.25 * spread:
                hands["right" if misses["right"] > misses["left"] else "left"] = empty_part(21)
        return hands["left"], hands["right"]

    def _face_of(self, image: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Return the (68, 3) face, all 0 when the head is not seen or no face is found there."""
        seen = float(pose[0, 2])
        if self._face is None or seen < self.face_confidence:
            return empty_part(68)
        crop, x0, y0, pixel = _crop(image, face_square(pose))
        result = self._face.process(crop)
        if not result.multi_face_landmarks:
            return empty_part(68)
        mesh = result.multi_face_landmarks[0].landmark
        return np.array([(x0 + mesh[i].x * CROP * pixel, y0 + mesh[i].y * CROP * pixel, seen)
                         for i in MP_FACE_TO_68], dtype=np.float64)

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for task in (self._pose, self._hands, self._face):
            if task is not None:
                task.close()


# Tile sides as shares of the short side, one level after the other: squares of the short side
# (the halves of a long picture), then smaller ones. A tile is looked at when at least
# UNEXPLAINED of it is outside every person found so far.
TILE_LEVELS = (1.0, 0.6)
UNEXPLAINED = 0.4


def _extent(person: PoseResult) -> float:
    """The area of the box around a person's certain body points (0 for fewer than two)."""
    sure = person.body[person.body[:, 2] > THRESHOLD, :2]
    if len(sure) < 2:
        return 0.0
    return float(np.prod(sure.max(axis=0) - sure.min(axis=0)))
