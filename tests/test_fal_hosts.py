"""fal's own hosts served directly: the unmodified PyPI fal-client over real TLS."""

from __future__ import annotations

import json
import queue
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app import devcert
from tests.conftest import SAMPLE, LiveServer
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fal_hosts(app, overrides, live, tmp_path):
    """The fal-hosts app over TLS on 127.0.0.1 (a development CA), beside the live app."""
    from app import create_app

    port = free_port()
    paths = devcert.make(tmp_path / "fal-hosts", "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["cert"], paths["key"])
    server = LiveServer(create_app(overrides, fal_hosts=True), port, ssl_context=context)
    server.paths = paths
    server.bind = f"127.0.0.1:{port}"
    yield server
    server.stop()


def test_the_dev_ca_key_stays_private_and_the_bundle_trusts_the_listener(fal_hosts, api_key):
    paths = fal_hosts.paths
    assert paths["ca_key"].stat().st_mode & 0o077 == 0 and paths["key"].stat().st_mode & 0o077 == 0
    assert b"PRIVATE KEY" not in paths["ca-bundle"].read_bytes()
    trusted = httpx.get(f"{fal_hosts.url}/fal-ai/dwpose/requests/nope/status",
                        verify=ssl.create_default_context(cafile=paths["ca-bundle"]),
                        headers={"Authorization": f"Key {api_key}"})
    assert trusted.status_code == 404 and trusted.headers["X-Fal-Error-Type"] == "not_found"
    with pytest.raises(httpx.ConnectError):  # the public roots alone do not trust it
        httpx.get(f"{fal_hosts.url}/fal-ai/dwpose")


def test_the_listener_takes_posehook_keys_only(fal_hosts, http, api_key):
    verify = ssl.create_default_context(cafile=fal_hosts.paths["ca"])
    token = http.post("/v1/proxy-tokens", json={"ttl_seconds": 120}).json()["token"]
    for key in (token, "", "nope"):
        answer = httpx.post(f"{fal_hosts.url}/fal-ai/dwpose", json={}, verify=verify,
                            headers={"Authorization": f"Key {key}"} if key else {})
        assert answer.status_code == 401 and answer.headers["X-Fal-Error-Type"] == "unauthorized"
    answer = httpx.post(f"{fal_hosts.url}/fal-ai/dwpose", json={"image_url": "ftp://x/y.jpg"},
                        verify=verify, headers={"Authorization": f"Key {api_key}"})
    assert answer.status_code == 422  # the key is good: the input is what is refused


def test_the_python_fal_client_subscribe_submit_status_result_cancel_run_iter_events_timeout(
        fal_hosts, api_key, run_jobs):
    env = {"PATH": "/usr/bin:/bin", "FAL_KEY": api_key, "PHOTO": str(SAMPLE),
           "HOME": str(fal_hosts.paths["ca"].parent),
           **devcert.client_env(fal_hosts.bind, fal_hosts.paths)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fal_python_client.py")],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    held, seen = False, []
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None or not lines.empty():
            assert time.monotonic() < deadline, seen
            while not lines.empty():
                line = lines.get().strip()
                seen.append(line)
                if line == "HOLD":  # between two rounds of jobs: none runs until RELEASE
                    held = True
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                elif line == "RELEASE":
                    held = False
            if not held:
                run_jobs()
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
    reports = [json.loads(x) for x in seen if x.startswith("{")]
    assert reports, (seen, proc.stderr.read())
    report = reports[-1]
    print(report)
    assert set(report) == {"subscribe", "submit status result", "iter_events", "run", "cancel",
                           "validation error", "a wrong key is refused", "start_timeout"}
    assert all(outcome == "ok" for outcome in report.values()), report


def test_the_procfiles_falhosts_process_serves_fals_hosts_over_tls(redis_url, tmp_path,
                                                                     api_key):
    import os
    import signal

    command = next(line.split(": ", 1)[1] for line in (ROOT / "Procfile").read_text()
                   .splitlines() if line.startswith("falhosts: "))
    bind = f"127.0.0.1:{free_port()}"
    paths = devcert.make(tmp_path / "fal-hosts", "127.0.0.1")
    env = {**os.environ, "REDIS_URL": redis_url, "POSEHOOK_FAL_HOST_BIND": bind,
           "POSEHOOK_FAL_HOST_CERTFILE": str(paths["cert"]),
           "POSEHOOK_FAL_HOST_KEYFILE": str(paths["key"]), "POSEHOOK_WEB_WORKERS": "1",
           "POSEHOOK_DATA_DIR": str(tmp_path / "data"), "PATH": f"{Path(sys.executable).parent}:"
                                                                 f"{os.environ['PATH']}"}
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    verify = ssl.create_default_context(cafile=paths["ca"])
    try:
        answer = None
        deadline = time.monotonic() + 60
        while answer is None:
            assert proc.poll() is None and time.monotonic() < deadline, "falhosts did not start"
            try:
                answer = httpx.get(f"https://{bind}/fal-ai/dwpose/requests/x/status",
                                   verify=verify, headers={"Authorization": f"Key {api_key}"})
            except httpx.ConnectError:
                time.sleep(0.2)
        assert answer.status_code == 404 and answer.json() == {"detail": "Request not found"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_answers_name_the_host_the_client_called_and_refuse_a_host_that_is_not_one(
        fal_hosts, api_key, sample_bytes):
    import base64

    verify = ssl.create_default_context(cafile=fal_hosts.paths["ca"])
    body = {"image_url": "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()}
    auth = {"Authorization": f"Key {api_key}"}
    called = f"localhost:{fal_hosts.bind.rsplit(':', 1)[1]}"  # the certificate names it too
    answer = httpx.post(f"https://{called}/fal-ai/dwpose", json=body, verify=verify,
                        headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status_url"] == (f"https://{called}/fal-ai/dwpose/requests/"
                                           f"{answer.json()['request_id']}/status")
    bad = httpx.post(f"{fal_hosts.url}/fal-ai/dwpose", json=body, verify=verify,
                     headers={**auth, "Host": "evil.example/x?"})
    assert bad.status_code == 400 and bad.headers["X-Fal-Error-Type"] == "bad_request"
