"""The mediapipe engine on the sample photo: her body points fall on her."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import load_engine, render
from app.images import decode_image
from tests.conftest import LARGE, NOBODY, TWO_PEOPLE

LIMIT = 40_000_000


def read(path) -> np.ndarray:
    """One of the test images as RGB."""
    return decode_image(path.read_bytes(), max_pixels=LIMIT)


@pytest.fixture(scope="module")
def engine():
    """The mediapipe engine, loaded once."""
    return load_engine("mediapipe")


@pytest.fixture
def photo(sample_bytes):
    """The sample photo as RGB."""
    return decode_image(sample_bytes, max_pixels=LIMIT)


def test_body_points_are_ordered_top_to_bottom_and_on_her(engine, photo):
    people = engine(photo)
    assert len(people) == 1
    body = people[0].body
    nose, neck, r_hip, l_hip, r_ankle = body[0], body[1], body[8], body[11], body[10]
    assert min(nose[2], neck[2], r_hip[2], l_hip[2], r_ankle[2]) > 0.3
    assert nose[1] < neck[1] < r_hip[1] < r_ankle[1]
    # Her silhouette spans roughly x 50..160, y 10..245 in the 194x259 photo.
    for x, y, _ in body[body[:, 2] > 0.3]:
        assert 40 < x < 170 and 5 < y < 250
    assert (people[0].face[:, 2] > 0).sum() == 68


def test_two_people_side_by_side_are_both_found(engine, photo):
    # The photo beside its mirror image, a white gap between: one woman on each side.
    pair = read(TWO_PEOPLE)
    assert pair.shape == (photo.shape[0], 2 * photo.shape[1] + 60, 3)
    people = engine(pair)
    assert len(people) == 2
    width = photo.shape[1]
    sides = []
    for person in people:
        sure = person.body[person.body[:, 2] > 0.3]
        assert len(sure) >= 10
        sides.append("left" if sure[:, 0].max() < width else
                     "right" if sure[:, 0].min() > width + 60 else "across")
    assert sorted(sides) == ["left", "right"]
    rendering = render(engine, pair, {"return_keypoints": True})
    assert len(rendering.keypoints["people"]) == 2


def test_render_defaults_to_the_input_size_and_honours_image_resolution(engine, photo):
    same = render(engine, photo, {})
    assert same.image.shape == photo.shape
    bigger = render(engine, photo, {"image_resolution": 388, "return_keypoints": True})
    assert bigger.image.shape == (518, 388, 3)
    assert bigger.keypoints["canvas_width"] == 388
    small_nose = np.array(same.keypoints["people"][0]["pose_keypoints_2d"][:2])
    big_nose = np.array(bigger.keypoints["people"][0]["pose_keypoints_2d"][:2])
    assert np.allclose(big_nose, small_nose * 2, atol=1.0)


def test_parts_can_be_left_out(engine, photo):
    no_face = render(engine, photo, {"include_face": False})
    full = render(engine, photo, {})
    assert (full.image == 255).all(axis=2).sum() > (no_face.image == 255).all(axis=2).sum()
    assert no_face.keypoints["people"][0]["face_keypoints_2d"] == []


def test_an_empty_picture_gives_a_black_image_not_an_error(engine):
    blank = np.full((240, 320, 3), 128, dtype=np.uint8)
    result = render(engine, blank, {})
    assert result.image.shape == (240, 320, 3) and result.image.max() == 0
    assert result.keypoints["people"] == []


def test_a_photo_of_an_empty_room_finds_nobody(engine):
    room = read(NOBODY)
    assert len(engine(room)) == 0
    result = render(engine, room, {"return_keypoints": True})
    assert result.image.shape == room.shape and result.image.max() == 0
    assert result.keypoints["people"] == []


def test_a_large_photo_is_drawn_at_its_size_with_her_where_she_stands(engine, photo):
    # The sample ten times larger: seen at 512 px, drawn at 1940x2590, points scaled up.
    large = read(LARGE)
    assert large.shape == (photo.shape[0] * 10, photo.shape[1] * 10, 3)
    result = render(engine, large, {"return_keypoints": True})
    assert result.image.shape == large.shape
    assert (result.image.max(axis=2) > 0).sum() > 10_000
    (person,) = result.keypoints["people"]
    small = render(engine, photo, {"return_keypoints": True}).keypoints["people"][0]
    big_nose = np.array(person["pose_keypoints_2d"][:2])
    small_nose = np.array(small["pose_keypoints_2d"][:2])
    assert np.allclose(big_nose, small_nose * 10, atol=0.02 * large.shape[1])


def test_auto_picks_mediapipe_without_weights(tmp_path):
    assert load_engine("auto", str(tmp_path)).name == "mediapipe"
