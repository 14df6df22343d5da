"""The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) over keypoint arrays.

An adaptive low-pass filter: slow motion is smoothed hard (cutoff ``min_cutoff``), fast
motion is followed closely (the cutoff rises by ``beta`` per unit of speed), so jitter
drops without the lag a fixed low-pass would add. Pure numpy; one filter per tracked person.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

MODES = ("off", "one_euro")


class OneEuroParams(NamedTuple):
    """The filter's three parameters.

    min_cutoff: Hz, the cutoff when a point stands still (lower: smoother, more lag).
    beta: how fast the cutoff rises with speed, in Hz per (short side of the frame per
        second); higher follows fast moves more closely.
    d_cutoff: Hz, the cutoff of the speed estimate itself.
    """

    min_cutoff: float = 1.0
    beta: float = 3.0
    d_cutoff: float = 1.0


DEFAULTS = OneEuroParams()
LIMITS = {"min_cutoff": (0.01, 100.0), "beta": (0.0, 1000.0), "d_cutoff": (0.01, 100.0)}
"""The ranges each parameter may take (the API checks them; so does the filter)."""


def alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Return the exponential smoothing factor of a low-pass at ``cutoff`` Hz, step ``dt`` s."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filter (K, 2) point positions frame by frame; points may come and go.

    A point that is missing (``visible`` False) keeps nothing: when it comes back its
    filter starts again from the new position, so a point never slides in from where it
    was last seen.
    """

    def __init__(self, params: OneEuroParams = DEFAULTS) -> None:
        for name, (low, high) in LIMITS.items():
            if not low <= getattr(params, name) <= high:
                raise ValueError(f"{name} must be between {low} and {high}")
        self.params = params
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._seen: np.ndarray | None = None

    def __call__(self, points: np.ndarray, visible: np.ndarray, dt: float) -> np.ndarray:
        """Return the filtered (K, 2) positions; ``visible`` (K,) bool, ``dt`` seconds > 0."""
        points = np.asarray(points, dtype=np.float64)
        visible = np.asarray(visible, dtype=bool)
        if self._x is None or self._x.shape != points.shape:
            self._x = points.copy()
            self._dx = np.zeros_like(points)
            self._seen = visible.copy()
            return points.copy()
        assert self._dx is not None and self._seen is not None
        p = self.params
        fresh = visible & ~self._seen  # back after a gap: start again there
        speed = (points - self._x) / dt
        dx = self._dx + alpha(p.d_cutoff, dt) * (speed - self._dx)
        cutoff = p.min_cutoff + p.beta * np.linalg.norm(dx, axis=1)
        x = self._x + alpha(cutoff, dt)[:, None] * (points - self._x)
        x[fresh] = points[fresh]
        dx[fresh] = 0.0
        keep = visible[:, None]
        self._x = np.where(keep, x, self._x)
        self._dx = np.where(keep, dx, self._dx)
        self._seen = visible.copy()
        return np.where(keep, x, points)
