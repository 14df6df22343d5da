"""People tracked across video frames: stable ids by box overlap, each track filtered.

Each frame's people are matched to the tracks of the frames before by the IoU of their
boxes (greedy, best overlap first, at least ``min_iou``); a person no track takes starts a
new one with the next id, and a track nobody takes is kept ``max_age`` frames for its
person to come back. Matched people are smoothed by their track's One Euro filter
(``smoothing.py``) in coordinates divided by the frame's short side, so the parameters
mean the same at every resolution. Pure numpy; no service imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.openpose_json import person_box
from app.engine.smoothing import DEFAULTS, OneEuroFilter, OneEuroParams
from app.engine.types import PARTS, PoseResult

SIZES = (18, 21, 21, 68, 6)
"""Points of each PoseResult part, in field order (body, hands, face, feet)."""


def flatten(person: PoseResult) -> np.ndarray:
    """Return a person's points as one (134, 3) array, in PoseResult field order."""
    return np.concatenate([np.asarray(getattr(person, part), dtype=np.float64)
                           for part in PARTS])


def unflatten(points: np.ndarray, score: float | None = None) -> PoseResult:
    """Return the PoseResult of a (134, 3) array made by :func:`flatten` (and its score)."""
    edges = np.cumsum((0, *SIZES))
    return PoseResult(*(points[a:b].copy() for a, b in zip(edges[:-1], edges[1:], strict=True)),
                      score=score)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Return the intersection over union of two [x0, y0, x1, y1] boxes (0 for empty ones)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match(tracks: Sequence[Sequence[float]], found: Sequence[Sequence[float]],
          min_iou: float) -> dict[int, int]:
    """Return {found index: track index}, greedy by IoU, each side used at most once."""
    pairs = sorted(((iou(t, f), ti, fi) for ti, t in enumerate(tracks)
                    for fi, f in enumerate(found)), reverse=True)
    taken: dict[int, int] = {}
    used: set[int] = set()
    for overlap, ti, fi in pairs:
        if overlap < min_iou:
            break
        if fi not in taken and ti not in used:
            taken[fi] = ti
            used.add(ti)
    return taken


@dataclass
class Track:
    """One person followed over frames."""

    id: int
    box: list[float]
    filter: OneEuroFilter | None
    missed: int = 0


@dataclass
class Tracker:
    """Give each frame's people stable ids and (``smoothing="one_euro"``) filter them."""

    fps: float
    smoothing: str = "one_euro"
    params: OneEuroParams = DEFAULTS
    min_iou: float = 0.2
    max_age: int = 0
    """Frames a lost track is kept (0: one second's worth)."""
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def update(self, people: Sequence[PoseResult], scale: float) -> tuple[list[PoseResult],
                                                                          list[int]]:
        """Return (the people, smoothed when asked, in the same order; their person ids).

        ``scale`` is the frame's short side in the people's pixels.
        """
        boxes = [person_box(p) for p in people]
        taken = match([t.box for t in self.tracks], boxes, self.min_iou)
        dt = 1.0 / self.fps
        out: list[PoseResult] = []
        ids: list[int] = []
        matched: set[int] = set()
        for index, person in enumerate(people):
            track = self.tracks[taken[index]] if index in taken else None
            if track is None:
                track = Track(self.next_id, boxes[index], self._new_filter())
                self.next_id += 1
                self.tracks.append(track)
            elif track.missed > 2 and track.filter is not None:
                track.filter = self._new_filter()  # gone a while: start again where it is
            track.box, track.missed = boxes[index], 0
            matched.add(track.id)
            out.append(self._smooth(track, person, scale, dt))
            ids.append(track.id)
        max_age = self.max_age or max(1, round(self.fps))
        for track in self.tracks:
            if track.id not in matched:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= max_age]
        return out, ids

    def _new_filter(self) -> OneEuroFilter | None:
        return OneEuroFilter(self.params) if self.smoothing == "one_euro" else None

    @staticmethod
    def _smooth(track: Track, person: PoseResult, scale: float, dt: float) -> PoseResult:
        if track.filter is None:
            return person
        points = flatten(person)
        xy = track.filter(points[:, :2] / scale, points[:, 2] > 0, dt) * scale
        return unflatten(np.column_stack([xy, points[:, 2]]), person.score)


class TrackedEngine:
    """An engine whose people are tracked (and smoothed) across the frames it is given.

    Stands in for the engine in ``render``; ``ids`` are the person ids of the last call,
    in the order of the people it returned.
    """

    def __init__(self, engine: Any, tracker: Tracker) -> None:
        self.engine = engine
        self.tracker = tracker
        self.name = engine.name
        self.version = engine.version
        self.sees_padding = getattr(engine, "sees_padding", False)
        self.ids: list[int] = []

    def __call__(self, image: np.ndarray) -> list[PoseResult]:
        """Run the engine on one frame, then track its people."""
        people, self.ids = self.tracker.update(self.engine(image), float(min(image.shape[:2])))
        return people
