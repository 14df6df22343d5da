"""The One Euro filter and the tracker, as pure functions over synthetic tracks."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.smoothing import DEFAULTS, OneEuroFilter, OneEuroParams
from app.engine.tracking import Tracker, flatten, iou, match, unflatten
from app.engine.types import PoseResult

FPS = 30.0
MAX_LAG = 2
"""Frames the default filter may lag a moving point: the documented bound."""


def walk(frames: int = 150) -> np.ndarray:
    """A point swaying left and right (0.5 Hz, 0.2 short sides) while it drifts down:
    (frames, 2) positions in short sides of the frame."""
    t = np.arange(frames) / FPS
    return np.stack([0.3 + 0.2 * np.sin(np.pi * t), 0.5 + 0.05 * t], axis=1)


def jitter(track: np.ndarray, truth: np.ndarray) -> float:
    """Mean frame-to-frame movement that the true motion does not explain."""
    return float(np.abs(np.diff(track - truth, axis=0)).mean())


def lag(track: np.ndarray, truth: np.ndarray) -> int:
    """The delay (frames) at which the filtered track best matches the truth."""
    errors = [np.abs(track[10 + k:len(truth) - 10 + k] - truth[10:-10]).mean()
              for k in range(0, 8)]
    return int(np.argmin(errors))


def filtered(noisy: np.ndarray, params: OneEuroParams = DEFAULTS) -> np.ndarray:
    one_euro = OneEuroFilter(params)
    return np.array([one_euro(p[None], np.array([True]), 1 / FPS)[0] for p in noisy])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_default_filter_halves_jitter_and_lags_at_most_two_frames(seed):
    truth = walk()
    noisy = truth + np.random.default_rng(seed).normal(0, 0.004, truth.shape)  # ~2 px at 512
    smooth = filtered(noisy)
    assert jitter(smooth, truth) < 0.6 * jitter(noisy, truth)
    assert lag(smooth, truth) <= MAX_LAG
    assert lag(noisy, truth) == 0


def test_a_slow_filter_smooths_more_but_lags_more_than_the_default():
    truth = walk()
    noisy = truth + np.random.default_rng(4).normal(0, 0.004, truth.shape)
    slow = filtered(noisy, OneEuroParams(min_cutoff=0.3, beta=0.0))
    assert lag(slow, truth) > MAX_LAG  # a plain low pass: why beta is there


def test_a_point_that_comes_back_starts_where_it_is_not_where_it_was():
    one_euro = OneEuroFilter()
    seen, hidden = np.array([True]), np.array([False])
    one_euro(np.array([[0.1, 0.1]]), seen, 1 / FPS)
    one_euro(np.array([[0.0, 0.0]]), hidden, 1 / FPS)
    assert one_euro(np.array([[0.9, 0.9]]), seen, 1 / FPS).tolist() == [[0.9, 0.9]]


def test_the_parameters_are_checked():
    with pytest.raises(ValueError, match="beta"):
        OneEuroFilter(OneEuroParams(beta=-1))


def person(x: float, y: float, size: float = 100.0) -> PoseResult:
    """A person whose 18 body points fill a box at (x, y); other parts not found."""
    rng = np.random.default_rng(int(x * 7 + y))
    body = np.column_stack([x + rng.uniform(0, size, 18), y + rng.uniform(0, 2 * size, 18),
                            np.full(18, 0.9)])
    return unflatten(np.concatenate([body, np.zeros((116, 3))]))


def test_flatten_and_unflatten_are_each_others_inverse():
    one = person(10, 20)
    assert all(np.array_equal(a, b) for a, b in zip(unflatten(flatten(one)), one, strict=True))


def test_boxes_are_matched_by_overlap_best_first_and_once():
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0
    tracks = [[0, 0, 10, 10], [100, 0, 110, 10]]
    assert match(tracks, [[101, 0, 111, 10], [1, 0, 11, 10], [50, 50, 60, 60]], 0.2) == {
        0: 1, 1: 0}


def test_two_people_keep_their_ids_whatever_order_the_engine_lists_them_in():
    tracker = Tracker(FPS, smoothing="off")
    seen = []
    for frame in range(20):
        left, right = person(50 + 3 * frame, 40), person(400 - 3 * frame, 40)
        people = [left, right] if frame % 2 else [right, left]
        _, ids = tracker.update(people, 512)
        seen.append(ids if frame % 2 else ids[::-1])
    assert sorted(seen[0]) == [1, 2] and all(ids == seen[0] for ids in seen)


def test_someone_who_leaves_for_long_gets_a_new_id_and_a_short_gap_keeps_it():
    tracker = Tracker(FPS, smoothing="one_euro", max_age=5)
    assert tracker.update([person(50, 40)], 512)[1] == [1]
    for _ in range(3):
        tracker.update([], 512)
    assert tracker.update([person(52, 40)], 512)[1] == [1]
    for _ in range(6):
        tracker.update([], 512)
    assert tracker.update([person(52, 40)], 512)[1] == [2]


def test_tracked_people_are_smoothed_in_place_and_keep_their_scores():
    tracker = Tracker(FPS)
    rng = np.random.default_rng(5)
    still = person(100, 100)
    raw, out = [], []
    for _ in range(60):
        noisy = flatten(still).copy()
        noisy[:18, :2] += rng.normal(0, 2.0, (18, 2))
        smoothed, _ = tracker.update([unflatten(noisy)], 512)
        raw.append(noisy[:18, :2])
        out.append(smoothed[0].body[:, :2])
        assert np.array_equal(smoothed[0].body[:, 2], still.body[:, 2])
    moved = lambda frames: np.abs(np.diff(np.array(frames), axis=0)).mean()  # noqa: E731
    assert moved(out[10:]) < 0.5 * moved(raw[10:])
