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
    assert "face_keypoints_2d" not in no_face.keypoints["people"][0]
    assert "pose_keypoints_2d" in no_face.keypoints["people"][0]
    only_face = render(engine, photo, {"include_body": False, "include_hands": False})
    listed = only_face.keypoints["people"][0]
    assert sorted(listed) == ["bbox", "face_keypoints_2d", "score"]
    assert (only_face.image.max(axis=2) > 0).sum() > 0


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


def test_the_new_engine_is_the_tasks_one_and_holistic_stays_reachable(engine):
    assert engine.name == "mediapipe" and engine.version.startswith("tasks-")
    assert load_engine("mediapipe-holistic").version.startswith("holistic-")


def test_task_bundles_are_built_once_checked_and_rebuilt_when_damaged(tmp_path):
    from app.engine import mp_tasks

    path = mp_tasks.bundle_path("hand_landmarker", tmp_path)
    recorded = path.with_suffix(".sha256").read_text().strip()
    built = path.stat().st_mtime_ns
    assert mp_tasks.bundle_path("hand_landmarker", tmp_path) == path
    assert path.stat().st_mtime_ns == built  # reused, not rebuilt
    path.write_bytes(b"not a bundle")
    assert mp_tasks.bundle_path("hand_landmarker", tmp_path) == path
    import hashlib
    import zipfile

    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.with_suffix(
        ".sha256").read_text().strip()
    assert sorted(zipfile.ZipFile(path).namelist()) == ["hand_detector.tflite",
                                                        "hand_landmarks_detector.tflite"]
    assert recorded  # the first build wrote its digest too


def test_a_wheel_model_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    from app.engine import mp_tasks

    source, _, scaling = mp_tasks.BUNDLES["pose_landmarker"]["pose_detector.tflite"]
    monkeypatch.setitem(mp_tasks.BUNDLES["pose_landmarker"], "pose_detector.tflite",
                        (source, "0" * 64, scaling))
    with pytest.raises(ValueError, match="not the model posehook was measured with"):
        mp_tasks.build("pose_landmarker", tmp_path / "pose.task")
    assert not (tmp_path / "pose.task").exists()


def test_a_row_of_small_people_is_found_by_looking_again_in_tiles(engine, photo):
    # Five copies of her in a row, 259 px high in a 1090 px wide picture: one pass over the
    # whole picture (the detector sees it at 224 px) finds only one of them.
    gap = np.full((photo.shape[0], 30, 3), 255, np.uint8)
    copies = [photo if index % 2 else photo[:, ::-1] for index in range(5)]
    parts = [part for index, copy in enumerate(copies)
             for part in ((gap,) if index else ()) + (copy,)]
    row = np.ascontiguousarray(np.hstack(parts))
    from app.engine.mediapipe import MediaPipeEngine

    assert len(MediaPipeEngine(tiles=False)(row)) < 5
    people = engine(row)
    assert len(people) == 5
    centres = sorted(float(np.median(p.body[p.body[:, 2] > 0.3, 0])) for p in people)
    pitch = photo.shape[1] + 30
    for index, centre in enumerate(centres):  # one person in each copy, none twice
        assert index * pitch < centre < index * pitch + photo.shape[1]


def test_her_face_outline_is_a_face_around_her_nose(engine, photo):
    person = engine(photo)[0]
    nose, face = person.body[0, :2], person.face
    assert (face[:, 2] > 0.3).all()
    # The 68 points hug the head (a scrambled mesh scatters them over the picture): the jaw
    # line (0-16) runs from one side of the nose to the other, the nose tip (30) is near it.
    spread = np.ptp(face[:, :2], axis=0)
    assert 10 < spread[0] < 60 and 10 < spread[1] < 60
    assert np.linalg.norm(face[30, :2] - nose) < 0.25 * spread.max()
    assert face[0, 0] < nose[0] < face[16, 0] or face[16, 0] < nose[0] < face[0, 0]


def test_the_same_picture_gives_the_same_points_every_time(engine, photo):
    # No state is carried from one picture to the next (Holistic's hand and face tracking
    # would place the face from the previous call's: 1 px apart on this photo).
    first, second = engine(photo)[0], engine(photo)[0]
    for part in ("body", "left_hand", "right_hand", "face", "feet"):
        assert np.array_equal(getattr(first, part), getattr(second, part)), part
    assert first.score == second.score and 0.5 < first.score <= 1.0


def _passes(image: np.ndarray) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Return how many people the engine finds in the image and the tiles it ran a pose pass
    on (the whole picture first)."""
    from app.engine.mediapipe import MediaPipeEngine

    class Counting(MediaPipeEngine):
        def _poses(self, image, tile, landmarker=None):
            self.tiles_seen.append(tile)
            return super()._poses(image, tile, landmarker)

    counting = Counting(hands=False, face=False)
    counting.tiles_seen = []
    try:
        return len(counting(image)), counting.tiles_seen
    finally:
        counting.close()


def test_one_person_filling_the_picture_takes_one_pose_pass(photo):
    # Tiles over her would find nothing but phantom parts of her: none is run.
    assert _passes(photo) == (1, [(0, 0, photo.shape[1], photo.shape[0])])


def test_flat_background_beside_the_people_found_is_not_looked_at_again():
    # Beside each of the two women there is room no one covers, but it is a flat wall and a
    # white gap: no tile is run there (before, six were, each a pose pass).
    pair = read(TWO_PEOPLE)
    assert _passes(pair) == (2, [(0, 0, pair.shape[1], pair.shape[0])])


def test_a_person_a_tile_cuts_is_found_again_whole(engine, photo):
    # Three small copies of her on a grey wall, 1600 x 600: the whole picture's pass misses
    # them, and the first tiles (0.6 of the short side, 360 px high) end at her knees. Each
    # is looked at again on a square holding all of her: her ankles are placed too (she
    # stands on her right foot, the left one is at her knee).
    small = photo[::2, ::2]
    height, width = small.shape[:2]
    canvas = np.full((600, 1600, 3), 200, np.uint8)
    for x in (200, 700, 1200):
        canvas[270:270 + height, x:x + width] = small
    people = engine(canvas)
    assert len(people) == 3
    for person in people:
        ankles = person.body[[10, 13]]
        assert (ankles[:, 2] > 0.3).all()
        assert 270 + 0.75 * height < ankles[:, 1].max() < 270 + height
