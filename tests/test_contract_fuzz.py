"""schemathesis against openapi.yaml on a live stack: every check it has, no failure.

The stack is real (gunicorn, the fast-queue worker, the inference worker with the mediapipe
engine) on the test's Redis database, and schemathesis runs as its own CLI: every phase
(examples, coverage, fuzzing, stateful over the links it infers), ``--checks all``, a fixed
seed, a bounded number of cases per operation, one worker (so the seed fixes the run).

What a schema cannot promise is supplied around it: tests/contract_hooks.py points every
well-formed callback URL at a sink here and every well-formed image_url at the test photo
(a host that resolves and a photo are facts of the world, not of the schema), and
tests/schemathesis.toml names the two documented refusals of schema-valid cases (bytes that
are no photo, cancelling a finished request).

Nothing is excluded. ``POST /webhooks/fal`` is fuzzed too, though only its refusals can be
reached: a callback needs fal's ED25519 signature over the exact body, which no generated
case has (the signed path is tests/test_webhooks.py's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from app.store import apikeys
from tests.conftest import ROOT, SAMPLE
from tests.contract import SPEC_PATH
from tests.sinks import Sink
from tests.stack import Stack
from tests.videos import make_video

BIN = Path(sys.executable).parent
SEED = 20261203
MAX_EXAMPLES = 40
"""Cases per operation in each generating phase (the suite's budget: about a minute)."""


def test_the_service_answers_as_openapi_yaml_says_under_schemathesis(redis, redis_url,
                                                                     tmp_path):
    key = apikeys.create(redis, "schemathesis")[1]
    sink = Sink().start()
    # The per-key rate is raised: a 429 is documented, but most cases would get one.
    env = {"POSEHOOK_RATE_PER_KEY": "10000", "POSEHOOK_RATE_BURST": "10000"}
    hooks = {"SCHEMATHESIS_HOOKS": "tests.contract_hooks", "PYTHONPATH": str(ROOT),
             "CONTRACT_SINK_URL": sink.url, "CONTRACT_PHOTO": str(SAMPLE),
             "CONTRACT_VIDEO": str(make_video(tmp_path / "clip.mp4", frames=6, fps=6,
                                              width=160, height=120))}
    try:
        with Stack(redis_url, tmp_path / "stack", env=env) as stack:
            started = time.monotonic()
            run = subprocess.run(
                [str(BIN / "st"), "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
                 "run", str(SPEC_PATH), "--url", stack.url,
                 "--header", f"Authorization: Key {key}", "--checks", "all",
                 "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
                 "--generation-database", "none", "--no-color", "--request-timeout", "70"],
                capture_output=True, text=True, timeout=300, cwd=tmp_path,
                env={**os.environ, **hooks})
            took = time.monotonic() - started
    finally:
        sink.stop()
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-30000:]
    assert "25 selected / 25 total" in out, out[-5000:]  # every operation, none skipped
    cases = re.search(r"(\d+) generated", out)
    assert cases and int(cases[1]) > 500, out[-5000:]
    assert len(sink.received) > 0  # subscriptions and webhooks really went out
    print(f"schemathesis: {cases[1]} cases, seed {SEED}, {took:.1f} s")
