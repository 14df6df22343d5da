"""Body accuracy and warm latency of the engines on annotated photos; numbers, never asserts.

``.venv/bin/python -m bench.accuracy --data DIR`` where DIR is mmpose's ``tests/data`` (see
docs/benchmarks.md for how to get it); hands and faces NME are in ``bench.parts``. Photos go
through ``render`` at ``detect_resolution`` 512, output at their own size. The 12 limb joints
every dataset labels (shoulders, elbows, wrists, hips, knees, ankles) are scored, COCO's sigmas:

- AP: COCO keypoint AP (pycocotools, OKS, people ranked by the JSON's ``score``);
- PCK@0.1: share of labelled joints within 0.1 x the longer side of the person's box, each
  annotated person paired with the prediction of highest OKS (one to one; unpaired: 0);
- recall: annotated people with a prediction at OKS >= 0.5, all photos and multi-person photos;
- unmatched: predicted people at OKS < 0.5 to every annotated one (false or unannotated people);
- hidden: photos where render finds fewer people than the engine on the plain resized photo.

Engines (called in turn on each photo, so load drifts hit them alike): ``today`` is main's
engine (Holistic, blanking, detection on the 64-padded picture), ``holistic`` the same on the
plain picture, ``tasks`` the v2 engine. Latency rows: the sample photo at 512, warm, the
engines interleaved round by round, against ``Holistic.process`` called directly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# dataset folder -> (annotation file, its joint names); names of the 12 scored joints below.
DATASETS = {
    "coco": ("test_coco.json", "nose l_eye r_eye l_ear r_ear l_shoulder r_shoulder l_elbow "
             "r_elbow l_wrist r_wrist l_hip r_hip l_knee r_knee l_ankle r_ankle"),
    "ochuman": ("test_ochuman.json", "nose l_eye r_eye l_ear r_ear l_shoulder r_shoulder "
                "l_elbow r_elbow l_wrist r_wrist l_hip r_hip l_knee r_knee l_ankle r_ankle"),
    "mhp": ("test_mhp.json", "r_ankle r_knee r_hip l_hip l_knee l_ankle pelvis thorax "
            "upper_neck head_top r_wrist r_elbow r_shoulder l_shoulder l_elbow l_wrist"),
    "exlpose": ("test_exlpose.json", "l_shoulder r_shoulder l_elbow r_elbow l_wrist r_wrist "
                "l_hip r_hip l_knee r_knee l_ankle r_ankle head neck"),
    "crowdpose": ("test_crowdpose.json", "l_shoulder r_shoulder l_elbow r_elbow l_wrist "
                  "r_wrist l_hip r_hip l_knee r_knee l_ankle r_ankle top_head neck"),
    "aic": ("test_aic.json", "r_shoulder r_elbow r_wrist l_shoulder l_elbow l_wrist r_hip "
            "r_knee r_ankle l_hip l_knee l_ankle head_top neck"),
    "jhmdb": ("test_jhmdb_sub1.json", "neck belly head r_shoulder l_shoulder r_hip l_hip "
              "r_elbow l_elbow r_knee l_knee r_wrist l_wrist r_ankle l_ankle"),
    # Only with --sets: a street of 11 people, not in the tables measured before it was added.
    "posetrack18": ("annotations/test_posetrack18_val.json", "nose head_bottom head_top l_ear "
                    "r_ear l_shoulder r_shoulder l_elbow r_elbow l_wrist r_wrist l_hip r_hip "
                    "l_knee r_knee l_ankle r_ankle"),
}
DEFAULT_SETS = ("coco", "ochuman", "mhp", "exlpose", "crowdpose", "aic", "jhmdb")
JOINTS = ("l_shoulder r_shoulder l_elbow r_elbow l_wrist r_wrist l_hip r_hip l_knee r_knee "
          "l_ankle r_ankle").split()
SIGMAS = np.array([.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089])
# OpenPose-18 index of each scored joint.
FROM_BODY = [5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]


def load(data: Path, sets: tuple[str, ...] = DEFAULT_SETS) -> tuple[list[dict], list[dict]]:
    """Return (images, annotations) of ``sets`` in one COCO-style set over the 12 joints."""
    images, annotations = [], []
    for folder in sets:
        name, joints = DATASETS[folder]
        path = data / folder / name
        if not path.is_file():
            continue
        document = json.loads(path.read_text())
        order = joints.split()
        pick = [order.index(j) for j in JOINTS]
        renumber = {}
        for image in document["images"]:
            renumber[image["id"]] = len(images) + 1
            images.append({"id": len(images) + 1, "file": str(data / folder / image["file_name"]),
                           "dataset": folder})
        for ann in document["annotations"]:
            points = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)[pick]
            labelled = (points[:, 2] > 0) & (points[:, :2] > 0).all(axis=1)
            points[:, 2] = np.where(labelled, 2, 0)
            points[~labelled, :2] = 0
            x, y, w, h = ann["bbox"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": renumber[ann["image_id"]],
                "category_id": 1, "iscrowd": 0, "bbox": [x, y, w, h],
                "area": float(ann.get("area") or w * h),
                "keypoints": points.ravel().tolist(), "num_keypoints": int(labelled.sum())})
    return images, annotations


class Today:
    """Main's engine: Holistic with blanking, detecting on the 64-padded picture."""

    sees_padding = True

    def __init__(self, holistic) -> None:
        self.inner, self.name, self.version = holistic, "today", holistic.version

    def __call__(self, image):
        return self.inner(image)


def engines() -> dict:
    """Name -> engine, loaded."""
    from app.engine import load_engine

    holistic = load_engine("mediapipe-holistic")
    return {"today": Today(holistic), "holistic": holistic, "tasks": load_engine("mediapipe")}


def predictions(engine, image: np.ndarray, image_id: int) -> list[dict]:
    """Run render; return COCO-style results over the 12 joints."""
    from app.engine import render

    rendering = render(engine, image, {"detect_resolution": 512})
    out = []
    for person in rendering.keypoints["people"]:
        body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)[FROM_BODY]
        out.append({"image_id": image_id, "category_id": 1, "keypoints": body.ravel().tolist(),
                    "score": person["score"]})
    return out


def oks(gt: dict, dt: dict) -> float:
    """Object keypoint similarity of one prediction to one annotated person."""
    g = np.array(gt["keypoints"]).reshape(-1, 3)
    d = np.array(dt["keypoints"]).reshape(-1, 3)
    seen = g[:, 2] > 0
    if not seen.any():
        return 0.0
    distance = ((g[:, :2] - d[:, :2]) ** 2).sum(axis=1)
    e = distance / (2 * (2 * SIGMAS) ** 2 * (gt["area"] + np.spacing(1)))
    return float(np.exp(-e[seen]).mean())


def score(images: list[dict], annotations: list[dict], found: list[dict]) -> dict:
    """AP, PCK@0.1, recalls and unmatched predictions for one engine's results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO()
    truth.dataset = {"images": [{"id": i["id"]} for i in images], "annotations": annotations,
                     "categories": [{"id": 1, "name": "person", "keypoints": JOINTS}]}
    truth.createIndex()
    ap = 0.0
    if found:
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                evaluation = COCOeval(truth, truth.loadRes(found), "keypoints")
                evaluation.params.kpt_oks_sigmas = SIGMAS
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            finally:
                sys.stdout = stdout
        ap = max(0.0, float(evaluation.stats[0]))
    hits = joints = matched = people = multi_people = multi_matched = unmatched = 0
    for image in images:
        gts = [a for a in annotations if a["image_id"] == image["id"] and a["num_keypoints"]]
        dts = [d for d in found if d["image_id"] == image["id"]]
        pairs = sorted(((oks(g, d), gi, di) for gi, g in enumerate(gts)
                        for di, d in enumerate(dts)), reverse=True)
        taken_g, taken_d, best = set(), set(), {}
        for value, gi, di in pairs:
            if gi not in taken_g and di not in taken_d:
                taken_g.add(gi), taken_d.add(di)
                best[gi] = (value, dts[di])
        for gi, g in enumerate(gts):
            truth_points = np.array(g["keypoints"]).reshape(-1, 3)
            seen = truth_points[:, 2] > 0
            joints += int(seen.sum())
            value, dt = best.get(gi, (0.0, None))
            if dt is not None:
                d = np.array(dt["keypoints"]).reshape(-1, 3)
                reach = 0.1 * max(g["bbox"][2], g["bbox"][3])
                close = np.linalg.norm(d[:, :2] - truth_points[:, :2], axis=1) < reach
                hits += int((close & seen & (d[:, 2] > 0)).sum())
            good = value >= 0.5
            matched += good
            people += 1
            if len(gts) > 1:
                multi_people += 1
                multi_matched += good
        unmatched += sum(1 for di, d in enumerate(dts)
                         if max((oks(g, d) for g in gts), default=0.0) < 0.5)
    return {"ap": 100 * ap, "pck": 100 * hits / max(joints, 1), "matched": matched,
            "people": people, "multi": multi_matched, "multi_people": multi_people,
            "unmatched": unmatched}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def accuracy(data: Path, sets: tuple[str, ...] = DEFAULT_SETS) -> list[str]:
    """One row per engine over every photo of ``sets`` found under ``data``."""
    from app.engine import _resize, detect_size

    images, annotations = load(data, sets)
    loaded = engines()
    found = {name: [] for name in loaded}
    seconds = {name: [] for name in loaded}
    hidden = {name: 0 for name in loaded}
    for image in images:
        picture = np.ascontiguousarray(cv2.imread(image["file"])[:, :, ::-1])
        size = detect_size(picture.shape[1], picture.shape[0], 512)
        plain = np.ascontiguousarray(_resize(picture, size))
        for name, engine in loaded.items():
            predictions(engine, picture, image["id"])  # warm on this size
            started = time.perf_counter()
            found[name] += predictions(engine, picture, image["id"])
            seconds[name].append(time.perf_counter() - started)
            inner = engine.inner if name == "today" else engine
            shown = sum(1 for d in found[name] if d["image_id"] == image["id"])
            hidden[name] += shown < len(inner(plain))
    rows = [f"{len(images)} photos, {len(annotations)} annotated people "
            f"({sum(1 for i in images if sum(a['image_id'] == i['id'] for a in annotations) > 1)}"
            " multi-person photos)", "",
            "| engine | body AP | PCK@0.1 | people found (OKS ≥ 0.5) | recall, multi-person "
            "photos | unmatched predictions | photos where preprocessing hides people | "
            "warm p50 / p95 ms per photo |", "|---|---|---|---|---|---|---|---|"]
    for name in loaded:
        s = score(images, annotations, found[name])
        rows.append(
            f"| {name} | {s['ap']:.1f} | {s['pck']:.1f} | {s['matched']} of {s['people']} | "
            f"{s['multi'] / max(s['multi_people'], 1):.2f} ({s['multi']} of "
            f"{s['multi_people']}) | {s['unmatched']} | {hidden[name]} | "
            f"{statistics.median(seconds[name]) * 1000:.0f} / "
            f"{percentile(seconds[name], 0.95):.0f} |")
    return rows


def latency(runs: int) -> list[str]:
    """Warm p50 for one and more people at 512, interleaved, against Holistic direct."""
    import mediapipe

    from app.engine import render
    from bench.engine import photo

    loaded = engines()
    single = photo(512)
    gap = np.full((single.shape[0], 64, 3), 255, np.uint8)
    holistic = mediapipe.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1)
    pictures = {count: np.ascontiguousarray(np.hstack(
        [part for index in range(count) for part in ((gap,) if index else ()) + (single,)]))
        for count in (1, 2, 3)}
    calls = {"Holistic.process direct": lambda im: holistic.process(im)}
    for name, engine in loaded.items():
        if name == "today":
            calls[f"{name} engine call"] = lambda im, e=engine: e.inner(np.pad(
                im, ((0, -im.shape[0] % 64), (0, -im.shape[1] % 64), (0, 0)), "edge"))
        else:
            calls[f"{name} engine call"] = lambda im, e=engine: e(im)
        calls[f"{name} render"] = lambda im, e=engine: render(e, im, {"detect_resolution": 512})
    samples = {(name, count): [] for name in calls for count in pictures}
    for count, image in pictures.items():
        for call in calls.values():
            call(image)
        for _ in range(runs):
            for name, call in calls.items():
                started = time.perf_counter()
                call(image)
                samples[(name, count)].append(time.perf_counter() - started)
    holistic.close()
    base = statistics.median(samples[("Holistic.process direct", 1)])
    rows = ["| call | 1 person p50 / p95 ms | ratio to Holistic direct (1 person) | "
            "2 people p50 ms | 3 people p50 ms | found (1 / 2 / 3) |", "|---|---|---|---|---|---|"]
    for name in calls:
        one = samples[(name, 1)]
        engine = next((e for n, e in loaded.items() if name.startswith(n + " ")), None)
        found = "" if engine is None else " / ".join(
            str(len(render(engine, pictures[c], {"detect_resolution": 512}).keypoints["people"]))
            for c in pictures)
        rows.append(f"| {name} | {statistics.median(one) * 1000:.1f} / "
                    f"{percentile(one, 0.95):.1f} | {statistics.median(one) / base:.2f} | "
                    f"{statistics.median(samples[(name, 2)]) * 1000:.1f} | "
                    f"{statistics.median(samples[(name, 3)]) * 1000:.1f} | {found} |")
    return rows


def main() -> None:
    """Print the tables as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="mmpose's tests/data")
    parser.add_argument("--runs", type=int, default=20, help="latency rounds (0: none)")
    parser.add_argument("--only", choices=("body", "parts"), help="one table, not all")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS),
                        help=f"body sets, comma-separated, of: {', '.join(DATASETS)}")
    args = parser.parse_args()
    sets = tuple(args.sets.split(","))
    if args.only != "parts":
        print("\n### Body accuracy (12 limb joints)\n\n" + "\n".join(accuracy(args.data, sets)))
    if args.only != "body":
        from bench.parts import table

        print("\n### Hands and faces (NME)\n\n" + "\n".join(table(args.data, engines())))
    if args.runs and not args.only:
        print("\n### Warm latency at 512, interleaved\n\n" + "\n".join(latency(args.runs)))


if __name__ == "__main__":
    main()
