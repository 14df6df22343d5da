"""bench.video runs end to end on one-second clips and fills its tables with plausible numbers
(never a speed test): the frames asked for, positive rates, the engine's time inside the job's."""

from __future__ import annotations

from tests.bench_tables import positive, run_bench, tables


def test_the_quick_video_bench_times_the_engine_inside_the_job():
    out = run_bench("bench.video", "--fps", "3", "--seconds", "1")
    rows = tables(out)[""][1:]
    assert [row[0] for row in rows] == ["720p (1280x720, 1 s at 3 fps)",
                                        "480p (854x480, 1 s at 3 fps)"], out
    for _, frames, job, engine, ratio, apart, rss in rows:
        assert frames == "3", out
        positive(job), positive(engine), positive(apart)
        assert positive(job) <= positive(engine), out  # the engine's time is part of the job's
        assert 0 < float(ratio) <= 1, out
        assert all(positive(mib) > 50 for mib in rss.split(" / ")), out


def test_the_video_bench_by_people_per_frame():
    out = run_bench("bench.video", "--fps", "3", "--seconds", "1", "--people", "1,2")
    rows = tables(out)[""][1:]
    assert [row[0] for row in rows] == ["1", "2"], out
    for count, seen, job, engine, ratio in rows:
        assert 0 < float(seen) <= int(count), out
        assert positive(job) <= positive(engine) and 0 < float(ratio) <= 1, out
