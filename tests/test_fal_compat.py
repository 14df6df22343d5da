"""The unmodified @fal-ai/client (npm, pinned) against a live posehook through its proxy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from redis import Redis

from app.store import apikeys
from tests.conftest import SAMPLE
from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent


def test_fal_client_subscribe_queue_storage_streaming_errors_and_webhooks(redis_url, tmp_path):
    node = shutil.which("node")
    assert node, "node is needed for the fal client test (see README)"
    assert (ROOT / "node_modules" / "@fal-ai" / "client").is_dir(), "run `make test` (npm ci)"
    with Stack(redis_url, tmp_path) as stack:
        key = apikeys.create(Redis.from_url(redis_url, decode_responses=True), "node")[1]
        run = subprocess.run(
            [node, str(ROOT / "tests" / "node" / "fal_client.mjs")], cwd=ROOT, timeout=300,
            capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "POSEHOOK_URL": stack.url, "FAL_KEY": key,
                 "PHOTO": str(SAMPLE)})
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        assert lines, run.stdout + run.stderr + stack.log("web")[-3000:]
        report = json.loads(lines[-1])
        print(report)
        assert run.returncode == 0, report
        assert all(outcome == "ok" for outcome in report.values()), report
        assert set(report) >= {"subscribe", "queue status", "queue result", "storage upload",
                               "streaming subscribe", "sync run", "validation error",
                               "fal_webhook verified",
                               "streaming logs counted exactly",
                               "string proxyUrl goes to fal in node", "non-image upload",
                               "non-image as the image is a validation error"}
