"""Engine benchmarks: latency, overhead against MediaPipe called directly, memory, throughput.

Run from the repository root (``.venv/bin/python -m bench.engine``); results go to stdout as
Markdown, ready for docs/benchmarks.md. ``--throughput`` also starts the service and
measures requests per second with 1 and 2 inference workers (needs a Redis; REDIS_URL or
127.0.0.1:6379). Nothing here is a test: numbers are written down, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "tests" / "data" / "pose_sample.jpg"  # the suite's photo, in the repository


def photo(short_side: int) -> np.ndarray:
    """The sample photo (RGB) scaled so its short side is ``short_side``."""
    image = cv2.imread(str(SAMPLE))[:, :, ::-1]
    k = short_side / min(image.shape[:2])
    size = (round(image.shape[1] * k), round(image.shape[0] * k))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))


def percentiles(samples: list[float]) -> str:
    """Return 'p50 / p95' in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"{statistics.median(ordered) * 1000:.1f} / {p95 * 1000:.1f}"


def latency(runs: int) -> list[str]:
    """Cold and warm latency of render() per size, beside Holistic.process alone."""
    import mediapipe

    from app.engine import load_engine, render

    rows = ["| size (short side) | ours cold ms | ours warm p50 / p95 ms | "
            "MediaPipe direct p50 / p95 ms | overhead (p50 ratio) |", "|---|---|---|---|---|"]
    for size in (512, 1024, 2048):
        image = photo(size)
        options = {"detect_resolution": size}
        started = time.perf_counter()
        engine = load_engine("mediapipe")
        render(engine, image, options)
        cold = time.perf_counter() - started
        ours = []
        for _ in range(runs):
            t = time.perf_counter()
            render(engine, image, options)
            ours.append(time.perf_counter() - t)
        holistic = mediapipe.solutions.holistic.Holistic(static_image_mode=True,
                                                         model_complexity=1)
        holistic.process(image)
        direct = []
        for _ in range(runs):
            t = time.perf_counter()
            holistic.process(image)
            direct.append(time.perf_counter() - t)
        holistic.close()
        ratio = statistics.median(ours) / statistics.median(direct)
        rows.append(f"| {size} ({image.shape[1]}x{image.shape[0]}) | {cold * 1000:.0f} | "
                    f"{percentiles(ours)} | {percentiles(direct)} | {ratio:.2f} |")
    return rows


def people(runs: int) -> list[str]:
    """What each extra person costs the mediapipe engine (one Holistic pass per person)."""
    from app.engine import load_engine

    engine = load_engine("mediapipe")
    single = photo(512)
    gap = np.full((single.shape[0], 64, 3), 255, np.uint8)
    rows = ["| people in the picture | size | found | p50 / p95 ms |", "|---|---|---|---|"]
    for count in (1, 2, 3):
        image = np.ascontiguousarray(np.hstack(
            [part for index in range(count) for part in ((gap,) if index else ()) + (single,)]))
        found = len(engine(image))
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            engine(image)
            samples.append(time.perf_counter() - t)
        rows.append(f"| {count} | {image.shape[1]}x{image.shape[0]} | {found} | "
                    f"{percentiles(samples)} |")
    return rows


def dwpose_synthetic(runs: int) -> list[str]:
    """The dwpose pipeline's own cost (pre/post-processing) on the tiny synthetic models."""
    from app.engine.dwpose.pipeline import DWPoseEngine
    from tests import onnx_models

    with tempfile.TemporaryDirectory() as models:
        image = photo(1024)
        ratio = min(640 / image.shape[0], 640 / image.shape[1])
        onnx_models.detector(os.path.join(models, "yolox_l.onnx"),
                             [onnx_models.detector_row((100, 100, 600, 1000), ratio)])
        onnx_models.pose(os.path.join(models, "dw-ll_ucoco_384.onnx"),
                         *onnx_models.peaks({0: (144, 100)}))
        engine = DWPoseEngine(models)
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            engine(image)
            samples.append(time.perf_counter() - t)
    return ["| dwpose, synthetic models, 1024 px, 1 person | p50 / p95 ms: "
            f"{percentiles(samples)} |", "|---|---|"]


def memory(jobs: int) -> list[str]:
    """Resident memory of one warm engine over ``jobs`` renders at 512 px."""
    import psutil

    from app.engine import load_engine, render

    process = psutil.Process()
    engine = load_engine("mediapipe")
    image = photo(512)
    rows = ["| renders done | RSS MiB |", "|---|---|"]
    for done in range(jobs + 1):
        if done % 100 == 0:
            rows.append(f"| {done} | {process.memory_info().rss / 2**20:.1f} |")
        if done < jobs:
            render(engine, image, {})
    return rows


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
PHOTO_URI = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()


@contextlib.contextmanager
def service(inference_workers: int = 1) -> Iterator[tuple[Any, Any]]:
    """Run the whole service on a Redis database of its own; yield (stack, API client)."""
    import httpx
    from redis import Redis

    from app.store import apikeys
    from tests import redis_server
    from tests.stack import Stack

    base, embedded = redis_server.base_url()
    url = redis_server.claim_database(base)
    try:
        with tempfile.TemporaryDirectory() as work, Stack(url, Path(work)) as stack:
            for extra in range(1, inference_workers):
                stack.start_inference(f"inference-{extra}")
            key = apikeys.create(Redis.from_url(url, decode_responses=True), "bench")[1]
            with httpx.Client(base_url=stack.url, timeout=60,
                              headers={"Authorization": f"Key {key}"}) as client:
                yield stack, client
    finally:
        redis_server.release_database(url)
        if embedded is not None:
            embedded.stop()


def throughput(requests: int) -> list[str]:
    """Requests per second through the whole service with 1 and 2 inference workers."""
    rows = ["| inference workers | requests | seconds | requests/s |", "|---|---|---|---|"]
    for workers in (1, 2):
        with service(workers) as (_, client):
            client.post("/v1/requests", json={"input": {"image_url": PHOTO_URI}},
                        headers={"Prefer": "wait=60"})  # warm every process
            time.sleep(3)
            started = time.perf_counter()
            ids = [client.post("/v1/requests", json={"input": {"image_url": PHOTO_URI}}
                               ).json()["request_id"] for _ in range(requests)]
            completed = 0
            for request_id in ids:
                while (status := client.get(f"/v1/requests/{request_id}/status"
                                            ).json()["status"]) not in TERMINAL:
                    time.sleep(0.05)
                completed += status == "COMPLETED"
            elapsed = time.perf_counter() - started
        rows.append(f"| {workers} | {requests} ({completed} completed) | "
                    f"{elapsed:.1f} | {requests / elapsed:.2f} |")
    return rows


def worker_memory(jobs: int) -> list[str]:
    """RSS of the inference worker process over ``jobs`` requests through the service."""
    import psutil

    rows = ["| requests done | inference worker RSS MiB |", "|---|---|"]
    with service() as (stack, client):
        worker = psutil.Process(stack.procs["inference"].pid)
        for done in range(jobs + 1):
            if done == 1 or (done and done % 100 == 0):  # after the first: warm
                rows.append(f"| {done} | {worker.memory_info().rss / 2**20:.1f} |")
            if done < jobs:
                answer = client.post("/v1/requests", json={"input": {"image_url": PHOTO_URI}},
                                     headers={"Prefer": "wait=60"})
                assert answer.json()["status"] == "COMPLETED", answer.text
    return rows


def main() -> None:
    """Print every table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--memory-jobs", type=int, default=500)
    parser.add_argument("--throughput", type=int, default=0, metavar="REQUESTS")
    parser.add_argument("--worker-memory", type=int, default=0, metavar="REQUESTS")
    args = parser.parse_args()
    sections = []
    if args.runs:
        sections += [("Latency (mediapipe engine)", latency(args.runs)),
                     ("People per picture (mediapipe engine)", people(args.runs)),
                     ("dwpose pipeline overhead", dwpose_synthetic(args.runs))]
    if args.memory_jobs:
        sections.append(("Memory of a warm engine", memory(args.memory_jobs)))
    if args.throughput:
        sections.append(("Throughput through the service", throughput(args.throughput)))
    if args.worker_memory:
        sections.append(("Memory of the inference worker", worker_memory(args.worker_memory)))
    for title, rows in sections:
        print(f"\n### {title}\n")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
