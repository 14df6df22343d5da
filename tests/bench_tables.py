"""A benchmark's Markdown output read back for the tests of bench/: its tables, cell by cell."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT

NUMBER = re.compile(r"^\d+(\.\d+)?$")


def run_bench(module: str, *arguments: str) -> str:
    """Run ``python -m module arguments`` from the repository root; return its stdout."""
    run = subprocess.run([sys.executable, "-m", module, *arguments], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-5000:]
    return run.stdout


def tables(markdown: str) -> dict[str, list[list[str]]]:
    """Section title ("### ..."; "" before the first) → its table's lines as cells, the
    header first, the |---| rule left out."""
    found: dict[str, list[list[str]]] = {}
    title = ""
    for line in markdown.splitlines():
        if line.startswith("### "):
            title = line[4:]
        elif line.startswith("|") and not line.startswith("|---"):
            found.setdefault(title, []).append(
                [cell.strip() for cell in line.strip().strip("|").split("|")])
    return found


def positive(cell: str) -> float:
    """Return a cell of one number or 'p50 / p95', each checked to be a positive number, as
    its first number."""
    values = cell.split(" / ")
    for value in values:
        assert NUMBER.match(value) and float(value) > 0, cell
    return float(values[0])
