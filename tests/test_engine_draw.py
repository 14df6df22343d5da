"""Drawing: the same PoseResult gives the pixels DWPose's rules predict."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.draw import draw_pose
from app.engine.openpose_json import from_openpose, to_openpose
from app.engine.types import PARTS, PoseResult, empty_part


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
    # Limb 7 (neck 1 -> right hip 8) midpoint: (95, 90); DWPose's 7th colour, (0, 255, 0),
    # at 60 % (the values are written out: a wrong or re-ordered table must fail here).
    assert tuple(canvas[90, 95]) == (0, 153, 0)


def test_joint_centres_have_the_joint_colour_at_full_strength():
    canvas = draw_pose([person()], 200, 200, include_hands=False, include_face=False)
    assert tuple(canvas[180, 90]) == (0, 170, 255)  # right ankle, the 11th colour
    assert tuple(canvas[30, 100]) == (255, 0, 0)    # nose, the 1st
    assert tuple(canvas[120, 110]) == (0, 85, 255)   # left hip, the 12th


def test_hand_edges_and_points():
    canvas = draw_pose([person()], 200, 200, include_body=False, include_face=False)
    assert tuple(canvas[45, 30]) == (255, 0, 0)  # edge 0: HSV hue 0
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
    assert (tuple(canvas[180, 90]) == (0, 170, 255)) is drawn


def test_nobody_is_a_black_canvas():
    assert draw_pose([], 50, 60).shape == (50, 60, 3)
    assert draw_pose([], 50, 60).max() == 0


def test_openpose_json_round_trip():
    document = to_openpose([person()], 200, 200)
    assert document["canvas_width"] == 200 and len(document["people"]) == 1
    assert len(document["people"][0]["pose_keypoints_2d"]) == 54
    # OpenPose's 70-point face: the 68, then the right and left eye from the body.
    face = document["people"][0]["face_keypoints_2d"]
    assert len(face) == 210 and face[204:206] == [95.0, 25.0] and face[207:209] == [105.0, 25.0]
    back = from_openpose(document)[0]
    assert np.allclose(back.body[:, :2], person().body[:, :2])
    assert to_openpose(from_openpose(document), 200, 200) == document
    # An engine's own score (not the body's mean) comes back as it went.
    scored = to_openpose([person()._replace(score=0.95)], 200, 200)
    assert from_openpose(scored)[0].score == scored["people"][0]["score"] == 0.95


class _FixedEngine:
    """Finds the same hand-placed person on any picture, in that picture's own pixels."""

    name, version = "fixed", "1"

    def __call__(self, image):
        scale = np.array([image.shape[1] / 200, image.shape[0] / 200, 1.0])
        p = person()
        return [p._replace(**{part: getattr(p, part) * scale for part in PARTS})]


def test_the_picture_is_drawn_at_detection_size_and_grows_with_the_output():
    from app.engine import render

    small = render(_FixedEngine(), np.zeros((512, 512, 3), np.uint8), {"detect_resolution": 512})
    big = render(_FixedEngine(), np.zeros((512, 512, 3), np.uint8),
                 {"detect_resolution": 512, "image_resolution": 2048})
    assert small.image.shape == (512, 512, 3) and big.image.shape == (2048, 2048, 3)
    # Sticks and dots are 4x as wide too: about 16x the lit pixels (drawn at 2048, they
    # would only be about 4x: same widths, longer limbs).
    ratio = np.count_nonzero(big.image.max(axis=2)) / np.count_nonzero(small.image.max(axis=2))
    assert 13 < ratio < 19
    assert big.keypoints["canvas_width"] == 2048
    nose = big.keypoints["people"][0]["pose_keypoints_2d"][:2]
    assert nose == [1024.0, 307.2]  # (100, 30) of 200 at 2048


class _SeeingEngine(_FixedEngine):
    """The fixed person, remembering the size of every picture it was shown."""

    def __init__(self, sees_padding: bool) -> None:
        self.sees_padding = sees_padding
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, image):
        self.shapes.append(image.shape)
        return super().__call__(image)


@pytest.mark.parametrize("sees_padding, shown", [(False, (512, 684, 3)), (True, (512, 704, 3))])
def test_only_an_engine_that_pads_for_itself_is_shown_the_padding(sees_padding, shown):
    from app.engine import render

    engine = _SeeingEngine(sees_padding)
    result = render(engine, np.zeros((512, 684, 3), np.uint8), {"detect_resolution": 512})
    assert engine.shapes == [shown]
    # Drawn on the 64-padded canvas and cropped either way: the output is the picture's size.
    assert result.image.shape == (512, 684, 3)


def test_each_person_has_a_box_a_score_and_feet():
    p = person()
    p.feet[2] = (85, 195, 0.8)  # left heel, below the ankles
    listed = to_openpose([p], 200, 200)["people"][0]
    assert listed["bbox"] == [30.0, 25.0, 170.0, 195.0]  # hand at x 30, face at 170, heel 195
    assert listed["score"] == 0.9
    assert len(listed["foot_keypoints_2d"]) == 18 and listed["foot_keypoints_2d"][6:9] == [
        85.0, 195.0, 0.8]
    assert from_openpose(to_openpose([p], 200, 200))[0].feet[2, 1] == 195.0
    without_body = to_openpose([p], 200, 200, include_body=False)["people"][0]
    assert "pose_keypoints_2d" not in without_body and "foot_keypoints_2d" not in without_body


@pytest.mark.parametrize("sees_padding", [False, True])  # MediaPipe's way, and DWPose's
@pytest.mark.parametrize("size, detect, shown", [
    ((8, 1000), None, (8192, 66)),  # 512 across would be 64000 long: lowered to 8192
    ((10, 20000), 0, (8192, 4)),  # as it is would be 20000 long
    ((1000, 8), 2048, (66, 8192)),
    ((194, 259), None, (684, 512)),  # an ordinary photo: as before
])
def test_the_engine_never_sees_a_side_over_8192_and_the_picture_keeps_its_size(
        sees_padding, size, detect, shown):
    from app.engine import MAX_DETECT_SIDE, render

    engine = _SeeingEngine(sees_padding)
    width, height = size
    result = render(engine, np.zeros((height, width, 3), np.uint8),
                    {"detect_resolution": detect, "return_keypoints": True})
    padded = tuple(-(-side // 64) * 64 for side in shown) if sees_padding else shown
    assert engine.shapes == [(*padded, 3)]
    assert max(engine.shapes[0][:2]) <= MAX_DETECT_SIDE + 63
    assert result.image.shape == (height, width, 3)
    assert result.keypoints["canvas_width"] == width


def test_the_picture_is_made_smaller_than_asked_to_fit_a_side_and_a_pixel_bound():
    from app.engine import output_size, render

    thin = np.zeros((64, 4000, 3), np.uint8)
    asked = {"image_resolution": 1024, "return_keypoints": True}
    assert output_size(4000, 64, 1024) == (64000, 1024)
    for bounds, (width, height) in (({"max_side": 16383}, (16383, 262)),
                                    ({"max_pixels": 1_000_000}, (7906, 126)),
                                    ({"max_side": 4096, "max_pixels": 10**9}, (4096, 66))):
        result = render(_FixedEngine(), thin, asked, **bounds)
        assert result.image.shape == (height, width, 3)
        assert (result.keypoints["canvas_width"], result.keypoints["canvas_height"]) == (
            width, height)
        assert width * height <= bounds.get("max_pixels", width * height)
        assert (width, height) == output_size(4000, 64, 1024, **bounds)
    # Within the bounds, the picture is the size asked.
    assert render(_FixedEngine(), thin, {"image_resolution": 128},
                  max_side=16383, max_pixels=2 * 10**6).image.shape == (128, 8000, 3)
