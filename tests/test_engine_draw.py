"""Drawing: the same PoseResult gives the pixels DWPose's rules predict."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.draw import draw_pose
from app.engine.layout import COLORS, HAND_EDGE_COLORS
from app.engine.openpose_json import from_openpose, to_openpose
from app.engine.types import PoseResult, empty_part


def person() -> PoseResult:
    """A hand-placed person on a 200x200 canvas: every body point, one hand, a face."""
    body = empty_part(18)
    spots = {0: (100, 30), 1: (100, 60), 2: (80, 60), 3: (70, 90), 4: (60, 120), 5: (120, 60),
             6: (130, 90), 7: (140, 120), 8: (90, 120), 9: (90, 150), 10: (90, 180),
             11: (110, 120), 12: (110, 150), 13: (110, 180), 14: (95, 25), 15: (105, 25),
             16: (90, 28), 17: (110, 28)}
    for index, (x, y) in spots.items():
        body[index] = (x, y, 0.9)
    hand = empty_part(21)
    hand[0] = (30, 30, 0.9)
    hand[1] = (30, 60, 0.9)
    face = empty_part(68)
    face[0] = (170, 170, 0.9)
    return PoseResult(body, hand, empty_part(21), face, empty_part(6))


def test_limb_midpoint_has_the_limb_colour_dimmed():
    canvas = draw_pose([person()], 200, 200, include_hands=False, include_face=False)
    # Limb 7 (neck 1 -> right hip 8) midpoint: (95, 90); colour 7 at 60 %.
    expected = tuple(int(c * 0.6) for c in COLORS[6])
    assert tuple(canvas[90, 95]) == expected


def test_joint_centres_have_the_joint_colour_at_full_strength():
    canvas = draw_pose([person()], 200, 200, include_hands=False, include_face=False)
    assert tuple(canvas[180, 90]) == COLORS[10]   # right ankle
    assert tuple(canvas[30, 100]) == COLORS[0]    # nose


def test_hand_edges_and_points():
    canvas = draw_pose([person()], 200, 200, include_body=False, include_face=False)
    assert tuple(canvas[45, 30]) == tuple(round(c) for c in HAND_EDGE_COLORS[0])
    assert tuple(canvas[30, 30]) == (0, 0, 255)


def test_face_points_are_white_and_parts_switch_off():
    canvas = draw_pose([person()], 200, 200, include_body=False, include_hands=False)
    assert tuple(canvas[170, 170]) == (255, 255, 255)
    assert canvas.sum() == 255 * 3 * np.count_nonzero(canvas.max(axis=2))
    assert draw_pose([person()], 200, 200, include_body=False, include_hands=False,
                     include_face=False).max() == 0


@pytest.mark.parametrize("score, drawn", [(0.31, True), (0.3, False), (0.1, False)])
def test_body_threshold(score, drawn):
    p = person()
    p.body[10, 2] = score
    canvas = draw_pose([p], 200, 200, include_hands=False, include_face=False)
    assert (tuple(canvas[180, 90]) == COLORS[10]) is drawn


def test_nobody_is_a_black_canvas():
    assert draw_pose([], 50, 60).shape == (50, 60, 3)
    assert draw_pose([], 50, 60).max() == 0


def test_openpose_json_round_trip():
    document = to_openpose([person()], 200, 200)
    assert document["canvas_width"] == 200 and len(document["people"]) == 1
    assert len(document["people"][0]["pose_keypoints_2d"]) == 54
    back = from_openpose(document)[0]
    assert np.allclose(back.body[:, :2], person().body[:, :2])
    assert to_openpose(from_openpose(document), 200, 200) == document
