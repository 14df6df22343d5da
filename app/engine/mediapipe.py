"""MediaPipe engines (their models ship in the pinned wheel) mapped onto the DWPose layout.

``MediaPipeEngine`` (v2, the default): the Tasks PoseLandmarker finds up to ``max_people``
at once on the picture, and again in overlapping tiles where no one found covers it and the
picture is not flat (small people; ``app.engine.mp_people`` says where, merges and ranks), a
person a tile cuts again on a square holding all of them; each person's hands and face
are then the hand and face landmark models on regions placed from the pose
(``app.engine.mp_parts``); an elbow or knee between two seen joints is drawn
(``complete_limbs``). The legacy Holistic engine is in ``app.engine.holistic``.
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
from app.engine.mp_parts import PartsGraph
from app.engine.mp_people import (
    corners,
    cut_by,
    holding_square,
    merge,
    oks,
    person_score,
    pose_score,
    tiles,
    unexplained,
)
from app.engine.types import PoseResult, empty_part


def map_pose(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map (33, 3) MediaPipe pose points to OpenPose body (18, 3) and feet (6, 3)."""
    body = empty_part(18)
    for index, source in enumerate(MP_POSE_TO_BODY):
        if source is not None:
            body[index] = pose[source]
    body[1] = neck(pose[MP_SHOULDERS[0]], pose[MP_SHOULDERS[1]])
    return body, pose[MP_POSE_TO_FEET].copy()


# Pose-33 elbows and knees, each with the two joints it lies between.
_MIDDLES = {13: (11, 15), 14: (12, 16), 25: (23, 27), 26: (24, 28)}


def complete_limbs(pose: np.ndarray, width: int, height: int, reach: float = 0.05) -> np.ndarray:
    """Return the pose with each elbow or knee the model calls unseen, but whose two neighbours
    (shoulder and wrist, hip and ankle) are seen, scored as the less sure of them: the limb is
    drawn whole where the user sees both its ends, not cut into nothing (on the benchmark's
    photos the model places such joints within 5% of the person's size 3 times of 4). One
    placed just past the picture's border (within ``reach`` of its size) is put on the border:
    no point is ever given off the picture."""
    out = pose.copy()
    for joint, (a, b) in _MIDDLES.items():
        ends = min(pose[a, 2], pose[b, 2])
        if pose[joint, 2] > THRESHOLD or ends <= THRESHOLD:
            continue
        x, y = np.clip(pose[joint, :2], 0, (width - 1, height - 1))
        if abs(x - pose[joint, 0]) <= reach * width and abs(y - pose[joint, 1]) <= reach * height:
            out[joint] = (x, y, ends)
    return out


Tile = tuple[int, int, int, int]  # x, y, width, height in the picture's pixels
MIN_BODY_POINTS = 4  # fewer certain body points than this is not a person

# Pose-33 indices of each side's arm and hand (subject's left, then right).
_ARMS = {"left": (13, 15, 17, 19), "right": (14, 16, 18, 20)}  # elbow, wrist, pinky, index


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


class MediaPipeEngine:
    """PoseLandmarker for every person at once, then each one's hands and face from the pose."""

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

        def landmarker(count: int) -> Any:
            return vision.PoseLandmarker.create_from_options(vision.PoseLandmarkerOptions(
                base_options=options("pose_landmarker"), num_poses=count,
                min_pose_detection_confidence=pose_confidence,
                min_pose_presence_confidence=pose_confidence))

        self._pose = landmarker(max_people)
        self._tile_pose = landmarker(min(max_people, TILE_PEOPLE)) if tiles else None
        # Hands and face: their landmark models on regions placed from the pose, in one graph
        # (no palm or face detector: Holistic's way, and the cost of one person stays low).
        self.hands, self.face = hands, face
        self._parts = PartsGraph() if hands or face else None
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
                seen = self._look_again(image, poses)
                poses = self._whole(image, merge(poses + [pose for pose, _ in seen]), seen)
            poses = merge(poses)
            people = []
            for pose in poses[:self.max_people]:
                body, feet = map_pose(complete_limbs(pose, width, height))
                left, right, face = self._parts_of(image, pose)
                people.append(PoseResult(body=body, left_hand=left, right_hand=right,
                                         face=face, feet=feet, score=person_score(pose)))
        return sorted(people, key=_extent, reverse=True)

    def _whole(self, image: np.ndarray, poses: list[np.ndarray],
               seen: list[tuple[np.ndarray, Tile]]) -> list[np.ndarray]:
        """Return the poses with each person a tile's border cut found again on a square that
        holds all of them (the tile's pass left their joints beyond the border unseen)."""
        height, width = image.shape[:2]
        tile_of = {id(pose): tile for pose, tile in seen}
        out = []
        for pose in poses:
            tile = tile_of.get(id(pose))
            if tile is not None and cut_by(pose, tile, width, height):
                square = holding_square(pose, width, height)
                # Held to what any tile's pose is: big enough a square, sure enough a person.
                again = self._poses(image, square, self._tile_pose) if (
                    square[2] >= MIN_TILE) else []
                best = max(again, key=lambda other: oks(other, pose), default=None)
                if (best is not None and oks(best, pose) > SAME_PERSON
                        and pose_score(best) >= self.min_score):
                    pose = best
            out.append(pose)
        return out

    def _look_again(self, image: np.ndarray,
                    poses: list[np.ndarray]) -> list[tuple[np.ndarray, Tile]]:
        """Return the poses found in overlapping square tiles (small people are larger there to
        the 224 px detector), each level of tiles smaller, only over what no one found covers,
        each with its tile."""
        height, width = image.shape[:2]
        found = list(poses)
        more: list[tuple[np.ndarray, Tile]] = []
        corner_map = None  # made once, when the first tile is left unexplained
        for share in TILE_LEVELS:
            side = share * min(width, height)
            if side >= 0.9 * max(width, height) or side < MIN_TILE:
                continue  # a square picture: this tile is the whole picture again (or too
                # small a picture to cut: nobody is smaller in a tile than the detector's input)
            for tile in tiles(width, height, side):
                if len(found) >= 2 * self.max_people:
                    return more
                if unexplained(tile, found) < UNEXPLAINED:
                    continue
                if corner_map is None:
                    corner_map = corners(image)
                # What no one found covers must have structure: a flat wall, sky or gap
                # beside the people found holds nobody (copies side by side ran 6-9 tiles).
                if unexplained(tile, found, corner_map=corner_map) < STRUCTURED:
                    continue
                seen = self._poses(image, tile, self._tile_pose)
                found += seen
                # A tile shows a part of the picture: parts of people in it look like
                # people to the pose model, so what a tile finds must be surer.
                more += [(pose, tile) for pose in seen if pose_score(pose) >= self.min_score]
        return more

    def _poses(self, image: np.ndarray, tile: Tile,
               landmarker: Any = None) -> list[np.ndarray]:
        """Return the (33, 3) poses PoseLandmarker finds in a tile (x, y, w, h) of the picture,
        in the pixels of the whole picture."""
        x, y, w, h = tile
        found = (landmarker or self._pose).detect(self._wrap(image[y:y + h, x:x + w]))
        poses = []
        for landmarks in found.pose_landmarks:
            pose = _points(landmarks, w, h)
            pose[:, 0] += x
            pose[:, 1] += y
            if np.count_nonzero(map_pose(pose)[0][:, 2] > THRESHOLD) >= MIN_BODY_POINTS:
                poses.append(pose)
        return poses

    def _parts_of(self, image: np.ndarray,
                  pose: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the (21, 3) left and right hands and the (68, 3) face; a part not seen (or a
        phantom) is all 0. Hand points are scored by the wrist's visibility, the face's by the
        nose's."""
        # An arm the pose model does not see: any hand there is a guess, so none.
        sides = [side for side, (_, wrist, _, _) in _ARMS.items()
                 if self.hands and pose[wrist, 2] >= self.hand_confidence]
        face_on = self.face and pose[0, 2] >= self.face_confidence
        found = self._parts(image, pose, tuple(sides), face_on) if sides or face_on else {}
        hands, misses = {"left": empty_part(21), "right": empty_part(21)}, {}
        for side in sides:
            wrist, points = _ARMS[side][1], found.get(side)
            if points is None:
                continue
            miss = float(np.linalg.norm(points[0] - pose[wrist, :2]))
            # The hand found must start at this arm's wrist, not at the other hand nearby.
            if miss < 0.35 * hand_square(pose, side)[2]:
                hands[side] = np.column_stack([points, np.full(21, pose[wrist, 2])])
                misses[side] = miss
        if len(misses) == 2:  # one real hand found from both wrists: keep the nearer wrist's
            left, right = hands["left"], hands["right"]
            spread = max(np.ptp(left[:, 0]), np.ptp(left[:, 1]), 1.0)
            if np.mean(np.linalg.norm(left[:, :2] - right[:, :2], axis=1)) < 0.25 * spread:
                hands["right" if misses["right"] > misses["left"] else "left"] = empty_part(21)
        face = empty_part(68)
        if found.get("face") is not None:
            face = np.column_stack([found["face"][MP_FACE_TO_68], np.full(68, pose[0, 2])])
        return hands["left"], hands["right"], face

    def close(self) -> None:
        """Release the MediaPipe graphs."""
        for graph in (self._pose, self._tile_pose, self._parts):
            if graph is not None:
                graph.close()


# Tile sides as shares of the short side, one level after the other: squares of the short side
# (the halves of a long picture), then smaller ones. A tile is looked at when at least
# UNEXPLAINED of it is outside every person found so far.
TILE_LEVELS = (1.0, 0.6)
UNEXPLAINED = 0.4
# ...and at least STRUCTURED of it is both unexplained and textured (``mp_people.corners``).
# On the benchmark's photos every tile that added a person had 0.08 or more; the flat wall and
# white gap beside copies of the sample photo have 0.01 or less.
STRUCTURED = 0.02
# The most people one tile's pass places (each one a landmark-model run): a tile over a found
# person mostly sees parts of them, each of which would cost a run; 2 keeps the people the
# benchmark's tiles find (1 loses 2 of 38) and drops most of those runs.
TILE_PEOPLE = 2
MIN_TILE = 32
# A pose found again on the square holding a person replaces theirs when the two agree at
# least this much (OKS): the square may hold someone else more clearly.
SAME_PERSON = 0.3
"""The smallest tile side in pixels (a detect_resolution of 1 would make tiles of 0)."""


def _extent(person: PoseResult) -> float:
    """The area of the box around a person's certain body points (0 for fewer than two)."""
    sure = person.body[person.body[:, 2] > THRESHOLD, :2]
    if len(sure) < 2:
        return 0.0
    return float(np.prod(sure.max(axis=0) - sure.min(axis=0)))
