"""bench.accuracy, bench.parts and bench.photos run end to end on a tiny annotated set (never a
speed test).

The set is made here in mmpose's layout from the suite's own photos, its annotations written
from what the ``mediapipe`` engine (the benches' ``tasks``) finds: its body points (COCO's 17)
and its faces (as WFLW and COFW points), so that engine's rows must come out perfect (AP 100,
every person found, NME 0) while the other engines' rows are filled with numbers. A hand is
annotated on the empty room, where no engine can find one: every engine misses it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.engine import load_engine, render
from bench.parts import COFW_TO_68, WFLW_TO_68
from tests.bench_tables import positive, run_bench, tables
from tests.conftest import NOBODY, SAMPLE, TWO_PEOPLE

PHOTOS = (SAMPLE, TWO_PEOPLE, NOBODY)  # 1 person, 2 people, nobody
ENGINES = ("today", "holistic", "tasks")


def _picture(photo: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(photo))[:, :, ::-1])


def _found(photo: Path) -> list[np.ndarray]:
    """The (133, 3) COCO-WholeBody points of each person the mediapipe engine finds, rendered
    as the benches render (detect_resolution 512, output at the photo's size)."""
    rendering = render(load_engine("mediapipe"), _picture(photo),
                       {"detect_resolution": 512, "keypoints_format": "coco_wholebody"})
    return [np.array(p["keypoints"], dtype=np.float64).reshape(133, 3)
            for p in rendering.keypoints["people"]]


def _labelled(points: np.ndarray, size: int, rows: dict[int, int]) -> list[float]:
    """``size`` annotated points (flat x, y, v): row ``theirs`` from ``points[ours]`` for each
    ours → theirs of ``rows``, visible (2) where the engine gave a score, else unlabelled."""
    out = np.zeros((size, 3))
    for ours, theirs in rows.items():
        x, y, seen = points[ours]
        out[theirs] = (x, y, 2) if seen > 0 else (0, 0, 0)
    return out.ravel().tolist()


def _write(root: Path, folder: str, name: str, annotations: list[dict]) -> None:
    """Write one mmpose-style set: its photos copied in, its COCO-style JSON."""
    (root / folder).mkdir()
    for photo in PHOTOS:
        shutil.copy(photo, root / folder / photo.name)
    images = [{"id": number, "file_name": photo.name} for number, photo in enumerate(PHOTOS, 1)]
    (root / folder / name).write_text(json.dumps({"images": images, "annotations": annotations}))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """mmpose's tests/data in small: coco (bodies), wflw and cofw (faces), onehand10k (hands)."""
    root = tmp_path_factory.mktemp("mmpose-data")
    bodies, wflw, cofw = [], [], []
    for number, photo in enumerate(PHOTOS, 1):
        for points in _found(photo):
            body = np.array(_labelled(points, 17, {k: k for k in range(17)})).reshape(17, 3)
            sure = body[body[:, 2] > 0, :2]
            (x0, y0), (x1, y1) = sure.min(axis=0), sure.max(axis=0)
            bodies.append({"id": len(bodies) + 1, "image_id": number, "bbox": [
                x0, y0, x1 - x0, y1 - y0], "keypoints": body.ravel().tolist()})
            face = {23 + k: WFLW_TO_68[k] for k in range(68)}
            wflw.append({"image_id": number, "keypoints": _labelled(points, 98, face)})
            face = {23 + k: theirs for k, theirs in COFW_TO_68.items()}
            cofw.append({"image_id": number, "keypoints": _labelled(points, 29, face)})
    # A hand of 21 points in the middle of the empty room.
    turn = np.linspace(0, 2 * np.pi, 21, endpoint=False)
    hand = np.stack([97 + 10 * np.cos(turn), 130 + 10 * np.sin(turn), np.full(21, 2)], axis=1)
    hands = [{"image_id": PHOTOS.index(NOBODY) + 1, "keypoints": hand.ravel().tolist()}]
    _write(root, "coco", "test_coco.json", bodies)
    _write(root, "wflw", "test_wflw.json", wflw)
    _write(root, "cofw", "test_cofw.json", cofw)
    _write(root, "onehand10k", "test_onehand10k.json", hands)
    assert len(bodies) == 3 and len(wflw) == 3, "the mediapipe engine found 1 and 2 people"
    return root


def test_the_accuracy_bench_scores_the_engine_that_wrote_the_annotations_perfect(data):
    out = run_bench("bench.accuracy", "--data", str(data), "--runs", "1")
    assert "3 photos, 3 annotated people (1 multi-person photos)" in out
    found = {title: rows[1:] for title, rows in tables(out).items()}
    body = {row[0]: row[1:] for row in found["Body accuracy (12 limb joints)"]}
    assert list(body) == list(ENGINES), out
    assert body["tasks"][:5] == ["100.0", "100.0", "3 of 3", "1.00 (2 of 2)", "0"], out
    for name, (ap, pck, people, multi, unmatched, hidden, ms) in body.items():
        assert 0 <= float(ap) <= 100 and 0 <= float(pck) <= 100, (name, ap, pck)
        assert re.fullmatch(r"\d of 3", people) and re.fullmatch(r"\d\.\d\d \(\d of 2\)", multi)
        assert unmatched.isdigit() and 0 <= int(hidden) <= 3, (name, unmatched, hidden)
        positive(ms)

    parts = {(row[0], row[1]): row[2:] for row in found["Hands and faces (NME)"]}
    assert set(parts) == {(e, s) for e in ENGINES for s in ("onehand10k", "wflw", "cofw")}
    for name in ENGINES:
        assert parts[(name, "onehand10k")] == ["0 of 1", "—", ""], parts
        for faces in ("wflw", "cofw"):
            seen, _, failures = parts[(name, faces)]
            assert re.fullmatch(r"\d of 3", seen) and 0 <= float(failures) <= 1, parts
    assert parts[("tasks", "wflw")] == ["3 of 3", "0.000 / 0.000", "0.00"], parts
    assert parts[("tasks", "cofw")] == ["3 of 3", "0.000 / 0.000", "0.00"], parts

    calls = {row[0]: row[1:] for row in found["Warm latency at 512, interleaved"]}
    assert list(calls) == ["Holistic.process direct"] + [
        f"{e} {call}" for e in ENGINES for call in ("engine call", "render")]
    direct = calls["Holistic.process direct"]
    assert direct[1] == "1.00" and direct[4] == "", direct  # the baseline, no engine of ours
    for name, (one, ratio, two, three, people) in calls.items():
        for cell in (one, ratio, two, three):
            positive(cell)
        if name != "Holistic.process direct":  # people found on 1, 2 and 3 copies
            assert re.fullmatch(r"\d+ / \d+ / \d+", people), (name, people)


def test_the_photos_bench_lists_each_photo_and_draws_the_annotated_joints(data, tmp_path):
    from bench.accuracy import engines
    from bench.photos import draw, rows

    loaded = engines()
    table = rows(data, ("coco",), loaded)
    assert table[0] == ("| # | set | photo | size | annotated | today found / predicted | "
                        "holistic found / predicted | tasks found / predicted |")
    listed = [[cell.strip() for cell in row.strip("|").split("|")] for row in table[2:]]
    assert [row[:5] for row in listed] == [["1", "coco", "pose_sample.jpg", "194x259", "1"],
                                           ["2", "coco", "two_people.jpg", "448x259", "2"],
                                           ["3", "coco", "nobody.jpg", "194x259", "0"]]
    assert [row[7] for row in listed] == ["1 / 1", "2 / 2", "0 / 0"]  # tasks wrote them
    for row in listed:
        assert all(re.fullmatch(r"\d / \d", cell) for cell in row[5:7]), row

    written = draw(data, ("coco",), loaded, [2], tmp_path / "drawn")
    assert written == [tmp_path / "drawn" / f"2-{name}.png" for name in ENGINES]
    annotations = json.loads((data / "coco" / "test_coco.json").read_text())["annotations"]
    joints = [point for ann in annotations if ann["image_id"] == 2
              for point in np.reshape(ann["keypoints"], (17, 3))[5:] if point[2]]
    assert len(joints) > 12, "most of the two people's 12 limb joints are annotated"
    for path in written:
        picture = cv2.imread(str(path))
        assert picture.shape == (259, 448, 3), path
        for x, y, _ in joints:  # each scored joint (COCO's 6th to 17th) a green dot (BGR)
            assert picture[int(y), int(x)].tolist() == [0, 255, 0], (path, x, y)
