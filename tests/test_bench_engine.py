"""bench.engine runs end to end with its smallest options and fills every table with plausible
numbers (never a speed test)."""

from __future__ import annotations

import re

from tests.bench_tables import positive, run_bench, tables


def test_the_quick_engine_bench_fills_its_engine_tables():
    out = run_bench("bench.engine", "--runs", "1", "--memory-jobs", "1")
    found = tables(out)
    assert list(found) == ["Latency (mediapipe engine)", "People per picture (mediapipe engine)",
                           "dwpose pipeline overhead", "Memory of a warm engine"], out

    sizes = found["Latency (mediapipe engine)"][1:]
    assert [row[0].split()[0] for row in sizes] == ["512", "1024", "2048"], out
    for size, *cells in sizes:
        short, (width, height) = int(size.split()[0]), re.fullmatch(
            r"\d+ \((\d+)x(\d+)\)", size).groups()
        assert min(int(width), int(height)) == short, size
        for cell in cells:  # cold, ours warm, MediaPipe direct, their ratio
            positive(cell)

    people = found["People per picture (mediapipe engine)"][1:]
    assert [row[0] for row in people] == ["1", "2", "3"], out
    for count, size, seen, ms in people:
        assert re.fullmatch(r"\d+x684", size) and 1 <= int(seen) <= int(count), (count, seen)
        positive(ms)

    (dwpose,) = found["dwpose pipeline overhead"]
    assert dwpose[0] == "dwpose, synthetic models, 1024 px, 1 person", out
    positive(dwpose[1].removeprefix("p50 / p95 ms: "))

    assert len(found["Memory of a warm engine"]) == 2, out  # one row: before any render
    done, rss = found["Memory of a warm engine"][1]
    assert done == "0" and positive(rss) > 50, out


def test_the_engine_bench_measures_the_service_with_one_request():
    out = run_bench("bench.engine", "--runs", "0", "--memory-jobs", "0", "--throughput", "1",
                    "--worker-memory", "1")
    found = tables(out)
    assert list(found) == ["Throughput through the service", "Memory of the inference worker"]
    rows = found["Throughput through the service"][1:]
    assert [row[:2] for row in rows] == [["1", "1 (1 completed)"], ["2", "1 (1 completed)"]], out
    for _, _, seconds, rate in rows:  # seconds to 0.1: a fast machine may print 0.0
        assert float(seconds) >= 0 and positive(rate) > 0, rows
    [(done, rss)] = found["Memory of the inference worker"][1:]  # after the first: warm
    assert done == "1" and positive(rss) > 50, out
