"""/playground and /docs: served with strict headers, and driven in a real Chromium.

The browser tests run tests/node/playground.mjs (playwright-core, pinned in package.json)
against Debian's /usr/bin/chromium and a real stack. Without that Chromium they are skipped,
saying so, unless POSEHOOK_BROWSER_TESTS=required (CI), where its absence fails them.
Screenshots land in test-output/playground/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from redis import Redis

from app.store import apikeys
from tests.conftest import SAMPLE
from tests.contract import spec
from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-output" / "playground"


def test_pages_are_served_with_a_strict_policy_and_no_secret(live):
    for path in ("/playground", "/docs"):
        page = httpx.get(live.url + path)
        policy = page.headers["Content-Security-Policy"]
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in page.text and "Key " not in page.text.replace("Key …", "")
    for asset in ("/web/playground.js", "/web/playground.css", "/web/docs.js"):
        assert httpx.get(live.url + asset).status_code == 200
    assert httpx.get(live.url + "/web/playground.html").status_code == 404
    assert httpx.get(live.url + "/docs/swagger-ui/package.json").status_code == 404


def test_the_options_are_openapi_yamls_pose_input(live):
    options = httpx.get(live.url + "/playground/options.json").json()
    assert options["properties"] == spec()["components"]["schemas"]["PoseInput"]["properties"]


def test_the_docs_spec_is_openapi_yaml_served_from_this_origin(live):
    served = httpx.get(live.url + "/docs/openapi.json").json()
    assert served["servers"] == [{"url": "/", "description": "this server"}]
    assert {k: v for k, v in served.items() if k != "servers"} == \
        {k: v for k, v in spec().items() if k != "servers"}
    bundle = httpx.get(live.url + "/docs/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200, "run `make test` (npm ci installs swagger-ui-dist)"


@pytest.fixture
def browser():
    """Node and Chromium, or a skip (a failure under POSEHOOK_BROWSER_TESTS=required)."""
    node = shutil.which("node")
    missing = [what for what, ok in (
        ("/usr/bin/chromium (apt-get install chromium)", CHROMIUM.exists()),
        ("node", bool(node)),
        ("node_modules/playwright-core (npm ci)",
         (ROOT / "node_modules" / "playwright-core").is_dir())) if not ok]
    if missing:
        message = "browser tests not run: missing " + ", ".join(missing)
        if os.environ.get("POSEHOOK_BROWSER_TESTS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    return node


def run_page(node: str, stack: Stack, scenario: str, workdir: Path) -> dict:
    """Run one scenario of playground.mjs; return its report (every check must say ok)."""
    key = apikeys.create(Redis.from_url(stack.redis_url, decode_responses=True), "browser")[1]
    pose_input = spec()["components"]["schemas"]["PoseInput"]
    run = subprocess.run(
        [node, str(ROOT / "tests" / "node" / "playground.mjs")], cwd=ROOT, timeout=300,
        capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "POSEHOOK_URL": stack.url,
             "API_KEY": key, "PHOTO": str(SAMPLE), "OUT_DIR": str(SCREENSHOTS),
             "SCENARIO": scenario, "CHROMIUM": str(CHROMIUM),
             "POSE_INPUT": json.dumps(pose_input)})
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, run.stdout + run.stderr + stack.log("web")[-3000:]
    report = json.loads(lines[-1])
    print(json.dumps(report, indent=1))
    assert run.returncode == 0 and all(v == "ok" for v in report.values()), report
    return report


def test_the_playground_turns_the_sample_photo_into_a_pose(browser, redis_url, tmp_path):
    with Stack(redis_url, tmp_path) as stack:
        report = run_page(browser, stack, "result", tmp_path)
    assert {"skeleton in the result image", "overlay on", "keypoints JSON download",
            "422 for a bad URL, as the API words it", "playground fits 390px"} <= set(report)


def test_the_playground_cancels_a_queued_request_and_links_the_docs(browser, redis_url,
                                                                    tmp_path):
    # No inference worker: the request stays queued until the page cancels it.
    with Stack(redis_url, tmp_path, inference=False) as stack:
        report = run_page(browser, stack, "cancel", tmp_path)
    assert {"queued with its position", "cancelled", "docs render openapi.yaml"} <= set(report)
