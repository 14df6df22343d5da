"""fal's draw modes: which parts each draws, and the white masks of faces and hands."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import render
from app.engine.draw import MODES, draw_masks
from app.engine.types import PoseResult, empty_part
from app.images import decode_image
from app.schemas import DRAW_MODES, FAL_DRAW_MODE, FalInputSchema, PoseInputSchema


def _square_face_person() -> PoseResult:
    face = empty_part(68)
    for i, (x, y) in enumerate([(20, 20), (80, 20), (80, 80), (20, 80), (50, 50)]):
        face[i] = (x, y, 0.9)
    hand = empty_part(21)
    hand[0], hand[1] = (150, 150, 0.9), (160, 150, 0.9)  # two points: no hull
    return PoseResult(empty_part(18), hand, empty_part(21), face, empty_part(6))


def test_the_web_and_the_engine_know_the_same_seven_modes():
    assert tuple(MODES) == DRAW_MODES and FAL_DRAW_MODE == "body-pose"
    assert "draw_mode" not in PoseInputSchema().load({"image_url": "x"})  # full-pose
    assert FalInputSchema().load({"image_url": "x"})["draw_mode"] == "body-pose"


def test_a_mask_is_the_filled_white_hull_of_the_points():
    mask = draw_masks([_square_face_person()], 200, 200)
    assert set(np.unique(mask)) == {0, 255}
    filled = (mask[:, :, 0] == 255)
    assert filled[50, 50] and filled[25, 75] and not filled[10, 10]
    assert abs(int(filled.sum()) - 61 * 61) < 200  # the square 20..80, not five dots
    assert not filled[150:, 140:].any()  # a hand of two points makes no mask
    assert not draw_masks([_square_face_person()], 200, 200, include_face=False).any()


@pytest.fixture(scope="module")
def renders(request):
    from app.engine import load_engine
    from tests.conftest import SAMPLE

    engine = load_engine("mediapipe")
    image = decode_image(SAMPLE.read_bytes(), max_pixels=40_000_000)
    return {mode: render(engine, image, {"draw_mode": mode, "return_keypoints": True})
            for mode in DRAW_MODES}


def _white(picture: np.ndarray) -> int:
    return int((picture == 255).all(axis=2).sum())


def _coloured(picture: np.ndarray) -> int:
    """Pixels lit in a colour (sticks and hand edges), not white or grey."""
    spread = picture.max(axis=2).astype(int) - picture.min(axis=2).astype(int)
    return int((spread > 60).sum())


def _lit(picture: np.ndarray) -> np.ndarray:
    return picture.max(axis=2) > 0


def test_each_mode_draws_its_parts_of_the_sample_photo(renders):
    full, body = renders["full-pose"].image, renders["body-pose"].image
    face = renders["face-pose"].image
    assert _coloured(body) > 300 and _white(body) == 0  # the skeleton, no face dots
    assert _white(full) > 20 and (_lit(body) & ~_lit(full)).sum() < 50  # full = body + more
    assert _white(face) == _white(full) and _coloured(face) == 0  # the face's white dots only
    assert not _lit(renders["hand-pose"].image).any()  # the engine finds no hand in it


def test_hand_modes_draw_hands_only():
    hand = empty_part(21)
    for i in range(21):
        hand[i] = (100 + 10 * (i % 5), 100 + 10 * (i // 5), 0.9)
    body = empty_part(18)
    body[1], body[2] = (50, 50, 0.9), (20, 50, 0.9)
    person = PoseResult(body, hand, empty_part(21), empty_part(68), empty_part(6))
    kind, drawn = MODES["hand-pose"]
    from app.engine.draw import draw_pose

    picture = draw_pose([person], 200, 200, include_body="body" in drawn,
                        include_face="face" in drawn, include_hands="hands" in drawn)
    assert kind == "pose" and _coloured(picture) > 0 and not _lit(picture)[:, :60].any()
    mask = draw_masks([person], 200, 200, include_face=False)
    filled = mask[:, :, 0] == 255
    assert filled[120, 120] and filled.sum() > 1000 and not filled[:, :60].any()


def test_mask_modes_are_white_on_black_and_nest(renders):
    both = renders["face-hand-mask"].image
    face, hands = renders["face-mask"].image, renders["hand-mask"].image
    for picture in (both, face, hands):
        assert _coloured(picture) == 0
    assert _white(face) > 2 * _white(renders["face-pose"].image)  # filled, not dots
    assert _white(both) >= _white(face) and not _lit(hands).any()
    # The keypoints follow what was drawn: no body in a mask's JSON.
    person = renders["face-mask"].keypoints["people"][0]
    assert "pose_keypoints_2d" not in person and "face_keypoints_2d" in person
