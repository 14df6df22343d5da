"""bench/pipeline.py runs end to end and fills every row of its table (never a speed test)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("fan-out, 1 process of the Procfile's", "fan-out, 2 processes of the Procfile's",
        "ingress ",
        "overhead, one at a time:", "overhead, 2 clients:", "requests/s end to end,",
        "`GET /v1/requests?status=COMPLETED&limit=20`")
NUMBER = re.compile(r"\d")


def test_the_quick_bench_prints_a_number_in_every_row():
    run = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--quick", "--workers", "2",
         "--deliveries", "4", "--fanout-seconds", "3", "--raw-seconds", "0.3",
         "--ingress-seconds", "0.3", "--threads", "2", "--sequential", "1", "--concurrent", "2",
         "--clients", "2", "--e2e-requests", "1", "--list-sizes", "3,10,30", "--list-calls", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-5000:]
    rows = [line for line in run.stdout.splitlines()
            if line.startswith("| ") and not line.startswith(("| what", "|---"))]
    assert len(rows) == len(ROWS), run.stdout
    for row, label in zip(rows, ROWS, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        what, ours, baseline, ratio, target, verdict = cells
        assert what.startswith(label), row
        assert NUMBER.search(ours) and NUMBER.search(ratio), row
        assert baseline == "—" or NUMBER.search(baseline), row
        assert target and verdict in ("met", "**missed**"), row
