"""Video benchmark: frames per second of the video job against the engine alone, and memory.

Run from the repository root (``.venv/bin/python -m bench.video``). For each clip (the sample
photo walking across the frame, made with PyAV like the tests' clips) it runs the real job
function ``jobs.infer.run_video`` on the clip stored as an upload (read, decode, engine,
tracking and smoothing, drawing, H.264 encoding, storing, progress in Redis), with the engine
timed call by call inside the job: the baseline is the engine alone on the very same frames,
interleaved frame by frame with the rest of the job, so load on the machine weighs on both
alike. A separate pass of the engine alone over the decoded frames follows as a cross-check.
The job's resident memory is sampled while it runs. Nothing here is a test: numbers are
printed as Markdown for docs/benchmarks.md, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLIPS = {"720p": (1280, 720, 10), "480p": (854, 480, 30)}
"""name → (width, height, seconds)."""


def make_clip(folder: Path, name: str, fps: int, people: int = 1,
              seconds: int | None = None) -> Path:
    """Encode one benchmark clip (``people`` walking side by side); return its path."""
    from tests.videos import make_video

    width, height, length = CLIPS[name]
    return make_video(folder / f"{name}-{people}.mp4", frames=(seconds or length) * fps,
                      fps=fps, shift=width // 2 if people == 1 else width // 6, width=width,
                      height=height, people=people)


def engine_alone(engine, clip: Path) -> tuple[int, float]:
    """Return (frames, seconds in the engine) over every frame of a clip at 512 px."""
    import cv2

    from app.config import load_settings
    from app.video import decode_frames

    _, frames = decode_frames(clip.read_bytes(), load_settings({}))
    spent, count = 0.0, 0
    for frame in frames:
        k = 512 / min(frame.shape[:2])  # as render() resizes for detect_resolution 512
        seen = cv2.resize(frame, (round(frame.shape[1] * k), round(frame.shape[0] * k)),
                          interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
        started = time.perf_counter()
        engine(seen)
        spent += time.perf_counter() - started
        count += 1
    return count, spent


class TimedEngine:
    """An engine that adds up the seconds spent in its calls."""

    def __init__(self, engine) -> None:
        self.engine, self.seconds = engine, 0.0
        self.name, self.version = engine.name, engine.version
        self.sees_padding = getattr(engine, "sees_padding", False)

    def __call__(self, image):
        started = time.perf_counter()
        try:
            return self.engine(image)
        finally:
            self.seconds += time.perf_counter() - started


def timed_engine(services) -> TimedEngine:
    """Put a TimedEngine in place of the services' engine, found by value in their cache so
    that a change of the cache's key cannot leave the job running an untimed engine."""
    engine = services.engine
    timed = TimedEngine(engine)
    for key, value in list(services._cache.items()):
        if value is engine:
            services._cache[key] = timed
    assert services.engine is timed, "the services' engine is not cached"
    return timed


def job(services, clip: Path, smoothing: str,
        keypoints: bool = False) -> tuple[dict, float, list[tuple[float, float]]]:
    """Run the real video job on a clip; return (output, seconds, [(share done, RSS MiB)])."""
    import psutil

    from app.store import requests as store
    from jobs.infer import run_video

    stored = services.storage.put(clip.read_bytes(), "video/mp4", clip.name)
    record, _ = store.create(services.redis, key_id="bench", provider="local",
                             input={"video_url": stored.url, "smoothing": smoothing,
                                    "return_keypoints": keypoints})
    process = psutil.Process()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            progress = (store.get(services.redis, record.id).metrics or {}).get("progress")
            share = progress["fraction"] if progress else 0.0
            samples.append((share, process.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    output = run_video(services, record.id, record.input, record.created_at)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    samples.append((1.0, process.memory_info().rss / 2**20))
    return output, seconds, samples


def people_found(services, output: dict) -> float:
    """Return the mean people per frame in a job's keypoints file."""
    import json

    document = json.loads(services.storage.read(services.storage.key_from_url(
        output["keypoints_file"]["url"])))
    return sum(len(f["people"]) for f in document["frames"]) / len(document["frames"])


def people_rows(services, timed: TimedEngine, folder: Path, fps: int, smoothing: str,
                counts: list[int], seconds: int = 5) -> list[str]:
    """Frames/s of the job and of the engine in it, by people per frame (480p, 5 s)."""
    rows = ["| people per frame | found per frame (mean) | video job frames/s | engine alone in "
            "the job frames/s | ratio |", "|---|---|---|---|---|"]
    for count in counts:
        clip = make_clip(folder, "480p", fps, people=count, seconds=seconds)
        timed.seconds = 0.0
        output, spent, _ = job(services, clip, smoothing, keypoints=True)
        frames = output["video"]["num_frames"]
        rows.append(f"| {count} | {people_found(services, output):.2f} | {frames / spent:.2f} | "
                    f"{frames / timed.seconds:.2f} | {timed.seconds / spent:.2f} |")
        print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--clips", default="720p,480p")
    parser.add_argument("--smoothing", default="one_euro")
    parser.add_argument("--people", default="", help="e.g. 1,2,3: a 5 s 480p clip with that "
                        "many people walking side by side, instead of the clips")
    parser.add_argument("--seconds", type=int, help="every clip this long (a quick run; "
                        "default: each clip's own length, 5 s with --people)")
    args = parser.parse_args()

    from app.config import load_settings
    from app.services import Services
    from tests import redis_server

    base, embedded = redis_server.base_url()
    url = redis_server.claim_database(base)
    folder = Path(tempfile.mkdtemp(prefix="posehook-bench-video-"))
    settings = load_settings({"redis_url": url, "data_dir": str(folder / "data"),
                              "engine": "mediapipe"})
    services = Services.from_settings(settings)
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    rows = ["| clip | frames | video job frames/s | engine alone in the job frames/s | "
            "ratio | engine alone, separate pass frames/s | job RSS MiB at 10 % / 50 % / end |",
            "|---|---|---|---|---|---|---|"]
    try:
        timed = timed_engine(services)
        if args.people:
            rows = people_rows(services, timed, folder, args.fps, args.smoothing,
                               [int(n) for n in args.people.split(",")], args.seconds or 5)
        for name in args.clips.split(",") if not args.people else ():
            clip = make_clip(folder, name, args.fps, seconds=args.seconds)
            width, height, length = CLIPS[name]
            seconds = args.seconds or length
            timed.seconds = 0.0
            output, spent, samples = job(services, clip, args.smoothing)
            frames = output["video"]["num_frames"]
            alone = frames / timed.seconds
            count, apart = engine_alone(timed.engine, clip)
            rss = [min(samples, key=lambda s, at=at: abs(s[0] - at))[1] for at in (0.1, 0.5)]
            rows.append(f"| {name} ({width}x{height}, {seconds} s at {args.fps} fps) | {frames} | "
                        f"{frames / spent:.2f} | {alone:.2f} | {frames / spent / alone:.2f} | "
                        f"{count / apart:.2f} | "
                        f"{rss[0]:.0f} / {rss[1]:.0f} / {samples[-1][1]:.0f} |")
            print(rows[-1], file=sys.stderr)
    finally:
        print(f"load after: {os.getloadavg()}", file=sys.stderr)
        redis_server.release_database(url)
        if embedded is not None:
            embedded.stop()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
