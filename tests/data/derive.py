"""Make the derived test images from pose_sample.jpg (see NOTICE.md).

Run from the repository root: ``.venv/bin/python tests/data/derive.py``. The files are
committed; this records exactly how they were made so anyone can make them again.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
GAP = 60  # white columns between the two women in two_people.jpg
EMPTY_STRIP = 40  # left columns of the sample that show only wall and mat
SCALE = 10  # large.jpg is the sample this many times wider and taller


def main() -> None:
    """Write two_people.jpg, nobody.jpg and large.jpg beside the sample."""
    sample = Image.open(HERE / "pose_sample.jpg").convert("RGB")
    width, height = sample.size

    pair = Image.new("RGB", (2 * width + GAP, height), "white")
    pair.paste(sample, (0, 0))
    pair.paste(ImageOps.mirror(sample), (width + GAP, 0))
    pair.save(HERE / "two_people.jpg", quality=90)

    strip = sample.crop((0, 0, EMPTY_STRIP, height))
    strip.resize((width, height), Image.BICUBIC).save(HERE / "nobody.jpg", quality=90)

    big = sample.resize((width * SCALE, height * SCALE), Image.LANCZOS)
    big.save(HERE / "large.jpg", quality=75)


if __name__ == "__main__":
    main()
