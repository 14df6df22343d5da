"""The README's curl walk-through, run as written against the whole service.

The block between ``<!-- walkthrough:start -->`` and ``<!-- walkthrough:end -->`` is taken
from README.md exactly and run with ``bash -e -o pipefail`` in an empty directory holding only
the photo, with KEY and URL pointing at a live stack. Every curl in it either fails on a 4xx or
5xx answer (``--fail-with-body``) or prints its status code (``-w``); both are checked.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from redis import Redis

from app.store import apikeys
from tests.conftest import SAMPLE
from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
# The codes the block prints with -w, in order: Prefer: wait (200), another body under the
# same Idempotency-Key (409), cancelling a finished request (400).
PRINTED_CODES = ["200", "409", "400"]


def walkthrough() -> str:
    """Return the shell block between the walk-through markers of README.md."""
    text = (ROOT / "README.md").read_text()
    assert text.count(START) == 1 and text.count(END) == 1, "one walk-through block, marked"
    marked = text[text.index(START) + len(START):text.index(END)].strip()
    assert marked.startswith("```sh\n") and marked.endswith("\n```"), marked[:80]
    return marked[len("```sh\n"):-len("\n```")] + "\n"


def curl_commands(block: str) -> list[str]:
    """Return each curl command of the block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", block)
    lines = [line for line in joined.splitlines() if not line.lstrip().startswith("#")]
    return [part for line in lines for part in re.split(r"\bcurl\b", line)[1:]]


def test_the_block_is_a_script_without_placeholders():
    block = walkthrough()
    commands = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
    for line in commands:  # no "…" and no <placeholder> for the reader to fill in
        assert "…" not in line and not re.search(r"<[A-Za-z_ -]+>", line), line
    assert "tests/data/pose_sample.jpg" in block and "jq" not in block
    assert re.search(r"^KEY=\$\{KEY:-", block, re.M) and re.search(r"URL=\$\{URL:-", block)
    for command in curl_commands(block):
        assert "--fail-with-body" in command or "%{http_code}" in command, command
    # The sizes the comments show are the photo's: 194x259 and its byte count.
    width, height = Image.open(SAMPLE).size
    for shown in re.findall(r'"width":(\d+),"height":(\d+)', block):
        assert shown == (str(width), str(height))
    assert f'"file_size":{SAMPLE.stat().st_size}' in block


@pytest.fixture
def workdir(tmp_path) -> Path:
    """An empty directory holding only the photo, where the README expects it."""
    where = tmp_path / "walk"
    (where / "tests" / "data").mkdir(parents=True)
    shutil.copy(SAMPLE, where / "tests" / "data" / SAMPLE.name)
    return where


def test_the_walkthrough_runs_top_to_bottom_and_leaves_the_pose_png(redis_url, tmp_path,
                                                                     workdir):
    with Stack(redis_url, tmp_path / "stack") as stack:
        key = apikeys.create(Redis.from_url(redis_url, decode_responses=True), "readme")[1]
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", walkthrough()], cwd=workdir, timeout=240,
            capture_output=True, text=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "KEY": key, "URL": stack.url,
                 "HOME": str(tmp_path)})
        story = (f"exit {run.returncode}\n--- stdout\n{run.stdout[-4000:]}\n--- stderr\n"
                 f"{run.stderr[-3000:]}\n--- web\n{stack.log('web')[-2000:]}")
    assert run.returncode == 0, story
    printed = [line for line in run.stdout.splitlines() if re.fullmatch(r"\d{3}", line)]
    assert printed == PRINTED_CODES, story
    assert "Idempotent-Replayed: true" in run.stdout, story

    data = (workdir / "pose.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "pose.png is the output PNG, not the photo"
    pose = Image.open(io.BytesIO(data))
    assert pose.format == "PNG" and pose.size == Image.open(SAMPLE).size
    pixels = np.asarray(pose.convert("RGB"))
    lit = pixels.max(axis=2) > 0
    assert lit.sum() > 500, "skeleton pixels in pose.png"
    assert len(np.unique(pixels[lit], axis=0)) > 10, "the limbs' many colours"
    assert pixels[:10, :10].max() == 0, "a black background around her"
