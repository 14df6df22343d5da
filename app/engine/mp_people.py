"""Who is in the picture, from several PoseLandmarker passes: where to look again, merging, ranking.

Pure numpy over (33, 3) MediaPipe pose points (x, y in pixels of the whole picture, visibility):

- ``tiles``: overlapping squares over the picture, the crops a further pass looks at (the pose
  detector sees its input at 224 px, so a person small in the picture is larger in a tile);
- ``unexplained``: how much of a tile no person found so far covers (only such tiles are run:
  a tile over a found person adds nothing but phantom parts of them, and costs a pass), and
  with ``corners`` how much of that has any structure at all (a flat wall or sky beside the
  people found cannot hold one more);
- ``cut_by`` and ``holding_square``: a person a tile's border cuts, and the square around all
  of them (a pass there places the joints the tile left out);
- ``merge``: OKS non-maximum suppression of the poses of every pass;
- ``pose_score``: the ranking score (torso certainty), so phantom people can be dropped.
"""

from __future__ import annotations

import cv2
import numpy as np

VISIBLE = 0.3  # a point at or below this visibility is not used to place a person
# Pose-33 indices scored by OKS when merging (nose, eyes, ears, the 12 limb joints), and COCO's
# sigmas for them.
OKS_JOINTS = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
OKS_SIGMAS = np.array([.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062,
                       .107, .107, .087, .087, .089, .089])
TORSO = np.array([11, 12, 23, 24])  # shoulders and hips
LIMBS = np.array([11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])


def tiles(width: int, height: int, side: float,
          overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """Return (x, y, w, h) squares of ``side`` (at most the short side) covering the picture,
    neighbours overlapping by at least ``overlap`` of the side."""
    side = int(min(side, width, height))
    step = side * (1 - overlap)

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / step))
        return [round(i * (length - side) / count) for i in range(count + 1)]

    return [(x, y, side, side) for y in starts(height) for x in starts(width)]


def box(pose: np.ndarray) -> tuple[float, float, float, float] | None:
    """Return (x0, y0, x1, y1) around the pose's visible points, None for fewer than two."""
    sure = pose[pose[:, 2] > VISIBLE, :2]
    if len(sure) < 2:
        return None
    return (*sure.min(axis=0), *sure.max(axis=0))


CELLS = 32  # a tile is measured on a CELLS x CELLS grid
CORNER = 20.0  # cornerMinEigenVal above this (0..255 grey, 3 x 3) is a corner, not flat or a line
TEXTURED = 0.1  # a cell is textured when at least this share of its pixels are corners


def corners(image: np.ndarray) -> np.ndarray:
    """Return an (H, W) float32 map of an RGB image, 1 where there is a corner (structure in two
    directions: an outline, a face, a fold), 0 on flat areas and along straight edges."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return (cv2.cornerMinEigenVal(grey, 3, 3) > CORNER).astype(np.float32)


def unexplained(tile: tuple[int, int, int, int], poses: list[np.ndarray],
                margin: float = 0.15, corner_map: np.ndarray | None = None) -> float:
    """Return the share of the tile's area outside every pose's box (grown by ``margin`` of
    its size on each side), measured on a 32 x 32 grid of the tile; with ``corner_map``
    (``corners`` of the picture) only the textured cells of that share count."""
    free = ~_covered(tile, poses, margin)
    if corner_map is not None:
        x, y, w, h = tile
        density = cv2.resize(corner_map[y:y + h, x:x + w], (CELLS, CELLS),
                             interpolation=cv2.INTER_AREA)
        free &= density >= TEXTURED
    return float(free.mean())


def _covered(tile: tuple[int, int, int, int], poses: list[np.ndarray],
             margin: float) -> np.ndarray:
    """Return the tile's CELLS x CELLS grid, True where a pose's grown box covers the cell."""
    x, y, w, h = tile
    cells = CELLS
    xs = x + (np.arange(cells) + 0.5) * w / cells
    ys = y + (np.arange(cells) + 0.5) * h / cells
    covered = np.zeros((cells, cells), dtype=bool)
    for pose in poses:
        found = box(pose)
        if found is None:
            continue
        x0, y0, x1, y1 = found
        grow_x, grow_y = margin * (x1 - x0), margin * (y1 - y0)
        inside_x = (xs >= x0 - grow_x) & (xs <= x1 + grow_x)
        inside_y = (ys >= y0 - grow_y) & (ys <= y1 + grow_y)
        covered |= inside_y[:, None] & inside_x[None, :]
    return covered


def cut_by(pose: np.ndarray, tile: tuple[int, int, int, int], width: int, height: int,
           slack: float = 0.02) -> bool:
    """Whether the pose's 33 points (visible or not: where the model puts the whole person)
    reach past a border of the tile (by more than ``slack`` of its side) that is not the
    picture's own border."""
    x, y, w, h = tile
    xs, ys, pad = pose[:, 0], pose[:, 1], slack * w
    return bool((x > 0 and xs.min() < x - pad) or (x + w < width and xs.max() > x + w + pad)
                or (y > 0 and ys.min() < y - pad) or (y + h < height and ys.max() > y + h + pad))


def holding_square(pose: np.ndarray, width: int, height: int,
                   grow: float = 1.5) -> tuple[int, int, int, int]:
    """Return the (x, y, side, side) square around all 33 points of the pose, its side ``grow``
    times their extent (at most the picture's short side), moved inside the picture."""
    low, high = pose[:, :2].min(axis=0), pose[:, :2].max(axis=0)
    side = int(max(min(grow * float((high - low).max()), width, height), 1))
    cx, cy = (low + high) / 2
    x = int(np.clip(cx - side / 2, 0, width - side))
    y = int(np.clip(cy - side / 2, 0, height - side))
    return x, y, side, side


def oks(a: np.ndarray, b: np.ndarray) -> float:
    """Object keypoint similarity of two poses over the joints both see (0 for fewer than 3),
    with the larger pose's box area as the scale."""
    both = (a[OKS_JOINTS, 2] > VISIBLE) & (b[OKS_JOINTS, 2] > VISIBLE)
    if both.sum() < 3:
        return 0.0
    areas = []
    for pose in (a, b):
        found = box(pose)
        areas.append(0.0 if found is None else (found[2] - found[0]) * (found[3] - found[1]))
    area = max(max(areas), 1.0)
    distance = ((a[OKS_JOINTS, :2] - b[OKS_JOINTS, :2]) ** 2).sum(axis=1)
    e = distance / (2 * (2 * OKS_SIGMAS) ** 2 * area)
    return float(np.exp(-e[both]).mean())


def _inside(small: np.ndarray, large: np.ndarray) -> bool:
    """Whether the smaller pose is a part of the larger seen again: its box is mostly inside
    the larger's and its visible limb joints lie on the larger's."""
    a, b = box(small), box(large)
    if a is None or b is None:
        return False
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    if area_a <= 0 or inter < 0.7 * area_a:
        return False
    sure = small[LIMBS][small[LIMBS, 2] > VISIBLE, :2]
    theirs = large[LIMBS][large[LIMBS, 2] > VISIBLE, :2]
    if not len(sure) or not len(theirs):
        return True
    reach = 0.2 * max(b[2] - b[0], b[3] - b[1])
    nearest = np.linalg.norm(sure[:, None] - theirs[None], axis=2).min(axis=1)
    return float(np.mean(nearest < reach)) >= 0.5


def pose_score(pose: np.ndarray) -> float:
    """Return how sure the pose is a person: the torso joints' mean visibility times the
    limb joints' (a phantom made of a few confident points scores low)."""
    return float(pose[TORSO, 2].mean() * pose[LIMBS, 2].mean())


def merge(poses: list[np.ndarray], threshold: float = 0.5) -> list[np.ndarray]:
    """Return the poses without duplicates (OKS above ``threshold`` to a better one, or a
    part of a larger one), best score first."""
    ranked = sorted(poses, key=pose_score, reverse=True)
    kept: list[np.ndarray] = []
    for pose in ranked:
        if any(oks(pose, other) > threshold or _inside(pose, other) or _inside(other, pose)
               for other in kept):
            continue
        kept.append(pose)
    return kept


def person_score(pose: np.ndarray) -> float:
    """Return a person's score in the output (their ``score``): the mean visibility of all 33."""
    return float(pose[:, 2].mean())
