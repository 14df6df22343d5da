"""The body benchmark photo by photo, and pictures of what each engine found, to look at.

``.venv/bin/python -m bench.photos --data DIR`` prints one row per photo of ``bench.accuracy``'s
sets (``--sets`` as there): the annotated people, and for each engine the people it found at
OKS >= 0.5 and the people it predicted. ``--draw OUT --photo N`` (repeatable; N is the row's
number) writes ``OUT/N-engine.png`` for each engine: its ``render`` picture over the photo
(darkened), the annotated joints as green dots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.accuracy import DATASETS, DEFAULT_SETS, engines, load, predictions, score  # noqa: E402


def _picture(image: dict) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(image["file"])[:, :, ::-1])


def rows(data: Path, sets: tuple[str, ...], loaded: dict) -> list[str]:
    """Markdown rows: photo number, set, file, annotated people, found / predicted per engine."""
    images, annotations = load(data, sets)
    out = ["| # | set | photo | size | annotated | " + " | ".join(
        f"{name} found / predicted" for name in loaded) + " |",
        "|---|---|---|---|---|" + "---|" * len(loaded)]
    for image in images:
        picture = _picture(image)
        mine = [a for a in annotations if a["image_id"] == image["id"] and a["num_keypoints"]]
        cells = []
        for engine in loaded.values():
            found = predictions(engine, picture, image["id"])
            result = score([image], mine, found)
            cells.append(f"{result['matched']} / {len(found)}")
        out.append(f"| {image['id']} | {image['dataset']} | {Path(image['file']).name[:40]} | "
                   f"{picture.shape[1]}x{picture.shape[0]} | {len(mine)} | "
                   + " | ".join(cells) + " |")
    return out


def draw(data: Path, sets: tuple[str, ...], loaded: dict, numbers: list[int],
         folder: Path) -> list[Path]:
    """Write each engine's picture of the photos numbered ``numbers``; return the paths."""
    from app.engine import render

    images, annotations = load(data, sets)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number in numbers:
        image = images[number - 1]
        picture = _picture(image)
        for name, engine in loaded.items():
            drawn = render(engine, picture, {"detect_resolution": 512}).image
            shown = np.where(drawn.max(axis=2, keepdims=True) > 0, drawn, picture // 2)
            shown = np.ascontiguousarray(shown[:, :, ::-1])
            for ann in annotations:
                if ann["image_id"] == image["id"]:
                    for x, y, seen in np.array(ann["keypoints"]).reshape(-1, 3):
                        if seen:
                            cv2.circle(shown, (int(x), int(y)), max(2, picture.shape[1] // 300),
                                       (0, 255, 0), -1)
            path = folder / f"{number}-{name}.png"
            cv2.imwrite(str(path), shown)
            written.append(path)
    return written


def main() -> None:
    """Print the per-photo table, or write the pictures asked for."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="mmpose's tests/data")
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS),
                        help=f"body sets, comma-separated, of: {', '.join(DATASETS)}")
    parser.add_argument("--draw", type=Path, help="write pictures into this folder")
    parser.add_argument("--photo", type=int, action="append", default=[],
                        help="a row number to draw (repeatable)")
    args = parser.parse_args()
    sets, loaded = tuple(args.sets.split(",")), engines()
    if args.draw:
        print("\n".join(str(p) for p in draw(args.data, sets, loaded, args.photo, args.draw)))
    else:
        print("\n".join(rows(args.data, sets, loaded)))


if __name__ == "__main__":
    main()
