"""Keypoint layouts as data: OpenPose limbs and colours, hand edges, MediaPipe mappings."""

from __future__ import annotations

import colorsys

import numpy as np

THRESHOLD = 0.3

# OpenPose-18 limbs as 0-based pairs; DWPose draws the first 17.
LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
         (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]

COLORS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
          (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
          (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
          (255, 0, 255), (255, 0, 170), (255, 0, 85)]

HAND_EDGES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
              (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
              (18, 19), (19, 20)]

# Edge i is coloured by hue i/20 at full saturation and value, as DWPose does.
HAND_EDGE_COLORS = [tuple(c * 255 for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1, 1))
                    for i in range(len(HAND_EDGES))]
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)

STICK_WIDTH = 4
BODY_RADIUS = 4
HAND_RADIUS = 4
HAND_THICKNESS = 2
FACE_RADIUS = 3

# COCO-WholeBody (133 points: body 0-16, feet 17-22, face 23-90, left hand 91-111, right hand
# 112-132, as mmpose's coco_wholebody dataset lists them) index of each OpenPose-18 body point;
# None is the neck, which COCO does not have (DWPose makes it from the shoulders).
COCO_TO_BODY = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
# Where each part starts in the 133, and its length.
WHOLEBODY_PARTS = {"body": (0, 17), "feet": (17, 6), "face": (23, 68), "left_hand": (91, 21),
                   "right_hand": (112, 21)}



def neck(left_shoulder: np.ndarray, right_shoulder: np.ndarray) -> np.ndarray:
    """Return OpenPose's neck (3,) as DWPose makes it: the shoulders' midpoint, certain (score 1)
    only when both shoulders are above the threshold, else score 0."""
    point = (left_shoulder + right_shoulder) / 2
    point[2] = float(left_shoulder[2] > THRESHOLD and right_shoulder[2] > THRESHOLD)
    return point


def body_from_coco(points: np.ndarray) -> np.ndarray:
    """Return the OpenPose-18 body (18, 3) from COCO-ordered points (at least 17, 3)."""
    body = np.zeros((18, 3), dtype=np.float64)
    for row, source in enumerate(COCO_TO_BODY):
        if source is not None:
            body[row] = points[source]
    body[1] = neck(points[5], points[6])
    return body


# MediaPipe Pose-33 index for each OpenPose-18 point; None is the neck (shoulder midpoint).
MP_POSE_TO_BODY = [0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7]
MP_SHOULDERS = (11, 12)
# Feet in COCO-WholeBody order from MediaPipe's heel and foot-index points (no small toes).
MP_POSE_TO_FEET = [31, 31, 29, 32, 32, 30]

# MediaPipe face mesh (468) index for each of the 68 iBUG points (the LatentSync list).
MP_FACE_TO_68 = [
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
]
