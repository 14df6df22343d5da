"""Hands and face NME of the engines on mmpose's hand and face test sets; numbers, never asserts.

Part of ``bench.accuracy`` (``--parts``). Every photo goes through ``app.engine.render`` at
``detect_resolution`` 512 with ``keypoints_format`` ``coco_wholebody`` and the output at the
photo's size, so points are in the photo's pixels. Each annotated hand or face is paired with
the engine's hand (left or right, of any person) or face of lowest error among those centred
near it (within half the hand's size, within one eye distance of the face); none is a miss.

- hands (``onehand10k``, ``freihand``, ``panoptic``; 21 points in the engines' own order):
  NME = mean point error / the longer side of the box around the labelled points (mmpose's
  ``bbox_size`` normalisation, taken from the points because freihand's test boxes repeat);
- faces (``wflw`` 98 points, ``cofw`` 29): NME over the points that have an iBUG-68
  counterpart (all 68 of WFLW; 19 of COFW: brow and eye corners, nose, mouth, chin), divided
  by the distance of the outer eye corners as mmpose's NME does (WFLW 60/72, COFW 8/9);
  FR@0.1 is the share of faces missed or at NME > 0.1.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import cv2
import numpy as np

HAND_SETS = {"onehand10k": "test_onehand10k.json", "freihand": "test_freihand.json",
             "panoptic": "test_panoptic.json"}
# iBUG-68 index → WFLW-98 index: jaw every other contour point, upper brows, nose, eyes
# without WFLW's extra lid points, the whole mouth.
WFLW_TO_68 = [*range(0, 33, 2), 33, 34, 35, 36, 37, 42, 43, 44, 45, 46, *range(51, 60),
              60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75, *range(76, 96)]
# iBUG-68 index → COFW-29 index, for the COFW points that have one (even COFW indices are on
# the image's left of a frontal face, the subject's right, as iBUG's first of each pair).
COFW_TO_68 = {17: 0, 26: 1, 21: 2, 22: 3, 36: 8, 45: 9, 39: 10, 42: 11, 31: 18, 35: 19,
              30: 20, 33: 21, 48: 22, 54: 23, 51: 24, 62: 25, 66: 26, 57: 27, 8: 28}
FACE_SETS = {"wflw": ("test_wflw.json", dict(enumerate(WFLW_TO_68)), (60, 72)),
             "cofw": ("test_cofw.json", COFW_TO_68, (8, 9))}
MIN_POINTS = 10  # a predicted hand or face with fewer certain points is not one


def _photos(data: Path, folder: str, name: str) -> list[tuple[Path, list[np.ndarray]]]:
    """Return (photo, [(K, 3) labelled points of each annotation]) of one test set."""
    path = data / folder / name
    if not path.is_file():
        return []
    document = json.loads(path.read_text())
    points: dict[int, list[np.ndarray]] = {}
    for ann in document["annotations"]:
        points.setdefault(ann["image_id"], []).append(
            np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3))
    return [(data / folder / image["file_name"], points.get(image["id"], []))
            for image in document["images"]]


def _nme(predicted: np.ndarray, truth: np.ndarray, norm: float) -> float:
    """Mean error of (K, 3) predictions against (K, 3) truth over the labelled points."""
    labelled = truth[:, 2] > 0
    return float(np.linalg.norm(predicted[labelled, :2] - truth[labelled, :2], axis=1).mean()
                 / max(norm, 1e-6))


def _people(engine, picture: np.ndarray) -> list:
    from app.engine import render
    from app.engine.wholebody_json import from_wholebody

    rendering = render(engine, picture, {"detect_resolution": 512,
                                         "keypoints_format": "coco_wholebody"})
    return from_wholebody(rendering.keypoints)


def _best(candidates: list[np.ndarray], truth: np.ndarray, reach: float,
          score) -> float | None:
    """The lowest score of the candidates centred within ``reach`` of the labelled truth."""
    centre = truth[truth[:, 2] > 0, :2].mean(axis=0)
    found = [score(c) for c in candidates if (c[:, 2] > 0).sum() >= MIN_POINTS
             and np.linalg.norm(c[c[:, 2] > 0, :2].mean(axis=0) - centre) < reach]
    return min(found) if found else None


def measure(data: Path, loaded: dict) -> dict[str, dict[str, list[float | None]]]:
    """Return engine → part set → the NME of each annotated hand / face (None: missed)."""
    results: dict[str, dict[str, list[float | None]]] = {name: {} for name in loaded}
    for folder, name in HAND_SETS.items():
        for photo, hands in _photos(data, folder, name):
            picture = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
            for engine_name, engine in loaded.items():
                people = _people(engine, picture)
                for truth in hands:
                    sure = truth[truth[:, 2] > 0, :2]
                    size = float((sure.max(axis=0) - sure.min(axis=0)).max())
                    results[engine_name].setdefault(folder, []).append(_best(
                        [h for p in people for h in (p.left_hand, p.right_hand)], truth,
                        size / 2, lambda h, t=truth, s=size: _nme(h, t, s)))
    for folder, (name, mapping, eyes) in FACE_SETS.items():
        for photo, faces in _photos(data, folder, name):
            picture = np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])
            for engine_name, engine in loaded.items():
                people = _people(engine, picture)
                for truth in faces:
                    ours = np.array(list(mapping))
                    theirs = truth[list(mapping.values())]
                    norm = float(np.linalg.norm(truth[eyes[0], :2] - truth[eyes[1], :2]))
                    results[engine_name].setdefault(folder, []).append(_best(
                        [p.face for p in people], truth, norm,
                        lambda f, t=theirs, o=ours, n=norm: _nme(f[o], t, n)))
    return results


def table(data: Path, loaded: dict) -> list[str]:
    """Markdown rows: per engine and set, found, mean and median NME, and FR@0.1 for faces."""
    results = measure(data, loaded)
    rows = ["| engine | set | found | NME mean / median (found ones) | FR@0.1 (faces) |",
            "|---|---|---|---|---|"]
    for engine_name, sets in results.items():
        for folder, values in sets.items():
            found = [v for v in values if v is not None]
            nme = (f"{statistics.mean(found):.3f} / {statistics.median(found):.3f}"
                   if found else "—")
            failures = "" if folder in HAND_SETS else (
                f"{sum(1 for v in values if v is None or v > 0.1) / len(values):.2f}")
            rows.append(f"| {engine_name} | {folder} | {len(found)} of {len(values)} | {nme} | "
                        f"{failures} |")
    return rows
