"""Where the mediapipe engine looks again, how it merges and ranks what its passes find, and
which joints it draws."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.mp_people import (
    corners,
    cut_by,
    holding_square,
    merge,
    pose_score,
    tiles,
    unexplained,
)

# A standing person's 33 MediaPipe points in a unit box (x right, y down): head points near the
# top, shoulders, elbows, wrists, hands, hips, knees, ankles, feet.
_UNIT = {0: (.5, .08), 1: (.47, .06), 2: (.46, .06), 3: (.45, .06), 4: (.53, .06),
         5: (.54, .06), 6: (.55, .06), 7: (.42, .08), 8: (.58, .08), 9: (.48, .11),
         10: (.52, .11), 11: (.35, .2), 12: (.65, .2), 13: (.3, .35), 14: (.7, .35),
         15: (.28, .48), 16: (.72, .48), 17: (.27, .5), 18: (.73, .5), 19: (.28, .51),
         20: (.72, .51), 21: (.29, .5), 22: (.71, .5), 23: (.4, .52), 24: (.6, .52),
         25: (.4, .72), 26: (.6, .72), 27: (.4, .92), 28: (.6, .92), 29: (.39, .95),
         30: (.61, .95), 31: (.42, .97), 32: (.58, .97)}


def person(x: float, y: float, height: float, seen: float = 0.95) -> np.ndarray:
    """A (33, 3) pose standing in the box at (x, y) of this height (half as wide)."""
    pose = np.zeros((33, 3))
    for index, (u, v) in _UNIT.items():
        pose[index] = (x + u * height / 2, y + v * height, seen)
    return pose


def test_tiles_cover_the_picture_and_neighbours_overlap():
    found = tiles(640, 400, 240)
    assert all(w == h == 240 for _, _, w, h in found)
    covered = np.zeros((400, 640), bool)
    for x, y, w, h in found:
        assert 0 <= x and x + w <= 640 and 0 <= y and y + h <= 400
        covered[y:y + h, x:x + w] = True
    assert covered.all()
    xs = sorted({x for x, _, _, _ in found})
    assert all(b - a <= 0.75 * 240 for a, b in zip(xs, xs[1:], strict=False))
    assert tiles(300, 500, 1000) == [(0, 0, 300, 300), (0, 200, 300, 300)]


def test_a_tile_is_unexplained_where_no_one_found_stands():
    assert unexplained((0, 0, 100, 100), []) == 1.0
    big = person(0, 0, 200)  # box about x 27..73, y 12..194 of a 100-wide tile at 0..100
    assert unexplained((0, 0, 100, 100), [big]) < 0.5
    assert unexplained((300, 0, 100, 100), [big]) == 1.0


def test_only_textured_room_beside_the_people_found_counts_with_a_corner_map():
    picture = np.full((100, 300, 3), 90, np.uint8)  # a flat grey wall...
    picture[:, 150:152] = 250  # ...with one straight edge (a door frame): no corners
    # and a small checked pattern at the right (a shirt, say): corners everywhere on it
    picture[30:70, 230:270] = (np.indices((40, 40)) // 4).sum(axis=0)[..., None] % 2 * 255
    corner_map = corners(picture)
    assert unexplained((100, 0, 100, 100), []) == 1.0
    assert unexplained((100, 0, 100, 100), [], corner_map=corner_map) == 0.0
    assert unexplained((200, 0, 100, 100), [], corner_map=corner_map) > 0.02


def test_a_person_reaching_past_a_tile_border_inside_the_picture_is_cut():
    standing = person(100, 150, 200)  # y 162..344: her feet past a tile ending at y 300
    assert cut_by(standing, (0, 0, 300, 300), 600, 400)
    assert not cut_by(standing, (0, 0, 300, 300), 600, 300)  # the picture's own border
    assert not cut_by(standing, (0, 100, 300, 300), 600, 400)  # all of her is inside
    x, y, w, h = holding_square(standing, 600, 400)
    assert w == h == int(1.5 * (344 - 162)) and 0 <= y and y + h <= 400
    assert x <= standing[:, 0].min() and standing[:, 0].max() <= x + w
    assert y <= standing[:, 1].min() and standing[:, 1].max() <= y + h


def test_an_unseen_elbow_between_a_seen_shoulder_and_wrist_is_drawn():
    from app.engine.mediapipe import complete_limbs

    pose = person(100, 50, 200)
    pose[13, 2] = 0.1  # her left elbow: the model places it but calls it unseen
    pose[14, 2] = 0.1  # her right elbow, and her right wrist unseen too: that arm stays cut
    pose[16, 2] = 0.2
    pose[25, :] = (100 + 0.4 * 100, 262, 0.05)  # her left knee, a little past the border
    done = complete_limbs(pose, 400, 260)
    assert done[13, 2] == pytest.approx(0.95) and (done[13, :2] == pose[13, :2]).all()
    assert done[14, 2] == 0.1 and done[16, 2] == 0.2
    assert done[25, 2] == pytest.approx(0.95) and done[25, 1] == 259  # put on the border
    pose[25, 1] = 300  # far past it: not drawn
    assert complete_limbs(pose, 400, 260)[25, 2] == 0.05


def test_merge_keeps_two_people_and_drops_the_same_one_seen_twice():
    left, right = person(0, 0, 200), person(150, 0, 200)
    again = left.copy()
    again[:, :2] += 2  # the same person from a tile, a few pixels off
    again[:, 2] = 0.7  # and less sure there
    kept = merge([again, left, right])
    assert len(kept) == 2
    assert any(k is left for k in kept) and any(k is right for k in kept)


def test_a_part_of_a_person_seen_again_is_not_a_second_person():
    whole = person(0, 0, 300)
    legs = whole.copy()
    legs[:23, 2] = 0.0  # a tile over the legs: only hips, knees and feet look sure
    legs[23:, :2] += 3
    kept = merge([legs, whole])
    assert len(kept) == 1 and kept[0] is whole


def test_a_pose_without_a_torso_scores_low():
    sure, phantom = person(0, 0, 200), person(0, 0, 200)
    phantom[11:33, 2] = 0.05  # a head and nothing the model is sure of below it
    assert pose_score(sure) > 0.8 and pose_score(phantom) < 0.1


@pytest.mark.parametrize("resolution", [1, 8, 40])
def test_a_tiny_detect_resolution_renders_without_cutting_tiles_of_nothing(resolution):
    from app.engine import load_engine, render
    from tests.conftest import DATA

    image = np.asarray(Image.open(DATA / "two_people.jpg").convert("RGB"))
    result = render(load_engine("mediapipe"), image, {"detect_resolution": resolution})
    assert result.image.shape[:2] == image.shape[:2]
