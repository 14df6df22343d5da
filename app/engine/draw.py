"""Draw poses exactly as DWPose's ControlNet annotator does, from its published facts.

Order (as DWPose): the limbs of every person, the canvas dimmed to 60 % once, the body
joints, then every hand, then every face. Coordinates are truncated to whole pixels
after the same normalise-and-scale round trip DWPose makes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from app.engine.layout import (
    BODY_RADIUS,
    COLORS,
    FACE_POINT_COLOR,
    FACE_RADIUS,
    HAND_EDGE_COLORS,
    HAND_EDGES,
    HAND_POINT_COLOR,
    HAND_RADIUS,
    HAND_THICKNESS,
    LIMBS,
    STICK_WIDTH,
    THRESHOLD,
)
from app.engine.types import PoseResult

EPS = 0.01


def _px(value: float, size: int) -> int:
    """Return DWPose's pixel for a coordinate: normalised by the size, scaled back, truncated."""
    return int(value / size * size)


def draw_body(canvas: np.ndarray, bodies: Sequence[np.ndarray]) -> None:
    """Draw limbs (filled ellipses), dim the canvas, then joints; (18, 3) arrays in pixels."""
    height, width = canvas.shape[:2]
    for index, (a, b) in enumerate(LIMBS):
        for body in bodies:
            if body[a, 2] <= THRESHOLD or body[b, 2] <= THRESHOLD:
                continue
            xs = (body[a, 0] / width * width, body[b, 0] / width * width)
            ys = (body[a, 1] / height * height, body[b, 1] / height * height)
            mid_x, mid_y = sum(xs) / 2, sum(ys) / 2
            length = math.hypot(ys[0] - ys[1], xs[0] - xs[1])
            angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
            polygon = cv2.ellipse2Poly((int(mid_x), int(mid_y)), (int(length / 2), STICK_WIDTH),
                                       int(angle), 0, 360, 1)
            cv2.fillConvexPoly(canvas, polygon, COLORS[index])
    canvas[:] = (canvas * 0.6).astype(np.uint8)
    for joint in range(18):
        for body in bodies:
            if body[joint, 2] <= THRESHOLD:
                continue
            center = (_px(body[joint, 0], width), _px(body[joint, 1], height))
            cv2.circle(canvas, center, BODY_RADIUS, COLORS[joint], thickness=-1)


def _visible(points: np.ndarray, width: int, height: int) -> list[tuple[int, int] | None]:
    """Return whole-pixel points, None where hidden (score < 0.3 or at the border)."""
    out: list[tuple[int, int] | None] = []
    for x, y, score in points:
        if score < THRESHOLD:
            out.append(None)
            continue
        px, py = _px(x, width), _px(y, height)
        out.append((px, py) if px > EPS and py > EPS else None)
    return out


def draw_hand(canvas: np.ndarray, hand: np.ndarray) -> None:
    """Draw one (21, 3) hand: HSV-coloured edges of width 2, then red points."""
    height, width = canvas.shape[:2]
    points = _visible(hand, width, height)
    for index, (a, b) in enumerate(HAND_EDGES):
        if points[a] is not None and points[b] is not None:
            cv2.line(canvas, points[a], points[b], HAND_EDGE_COLORS[index],
                     thickness=HAND_THICKNESS)
    for point in points:
        if point is not None:
            cv2.circle(canvas, point, HAND_RADIUS, HAND_POINT_COLOR, thickness=-1)


def draw_face(canvas: np.ndarray, face: np.ndarray) -> None:
    """Draw one (68, 3) face as white dots."""
    height, width = canvas.shape[:2]
    for point in _visible(face, width, height):
        if point is not None:
            cv2.circle(canvas, point, FACE_RADIUS, FACE_POINT_COLOR, thickness=-1)


MODES = {
    "full-pose": ("pose", ("body", "hands", "face")),
    "body-pose": ("pose", ("body",)),
    "face-pose": ("pose", ("face",)),
    "hand-pose": ("pose", ("hands",)),
    "face-hand-mask": ("mask", ("hands", "face")),
    "face-mask": ("mask", ("face",)),
    "hand-mask": ("mask", ("hands",)),
}
"""fal's draw modes: a skeleton picture of some parts, or white masks of hands and faces."""
MASK_COLOR = (255, 255, 255)


def draw_mask(canvas: np.ndarray, points: np.ndarray) -> None:
    """Fill the convex hull of a part's visible points in white (nothing under 3 points)."""
    height, width = canvas.shape[:2]
    seen = [p for p in _visible(points, width, height) if p is not None]
    if len(seen) >= 3:
        hull = cv2.convexHull(np.array(seen, dtype=np.int32))
        cv2.fillConvexPoly(canvas, hull, MASK_COLOR)


def draw_masks(people: Sequence[PoseResult], height: int, width: int, *, include_hands: bool = True,
               include_face: bool = True) -> np.ndarray:
    """Return an (H, W, 3) uint8 picture: white filled hulls of hands and faces on black."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        if include_face:
            draw_mask(canvas, person.face)
        if include_hands:
            draw_mask(canvas, person.left_hand)
            draw_mask(canvas, person.right_hand)
    return canvas


def draw_pose(people: Sequence[PoseResult], height: int, width: int, *, include_body: bool = True,
              include_hands: bool = True, include_face: bool = True) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB picture of the poses on black."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    if include_body:
        draw_body(canvas, [p.body for p in people])
    if include_hands:  # every left hand, then every right hand, as DWPose stacks them
        for hand in [p.left_hand for p in people] + [p.right_hand for p in people]:
            draw_hand(canvas, hand)
    if include_face:
        for person in people:
            draw_face(canvas, person.face)
    return canvas
