"""Weight download: streamed, checked against SHA-256, installed atomically (local file server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading

import pytest

from app.engine.dwpose.weights import (
    FILES,
    SHA256,
    ChecksumError,
    download_weights,
    verify_weights,
)


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving two fake weight files."""
    root = tmp_path / "remote"
    root.mkdir()
    for name in FILES:
        (root / name).write_bytes(name.encode() * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.sums = {n: hashlib.sha256((root / n).read_bytes()).hexdigest() for n in FILES}
    yield srv
    srv.shutdown()


def test_download_checks_the_sums_and_installs(server, tmp_path):
    target = tmp_path / "models"
    paths = download_weights(str(target), base_url=server.url, progress=False,
                             checksums=server.sums)
    assert [os.path.basename(p) for p in paths] == list(FILES)
    assert (target / "SHA256SUMS").read_text().count("  ") == 2
    verify_weights(str(target))


def test_a_wrong_sum_installs_nothing(server, tmp_path):
    target = tmp_path / "models"
    wrong = {**server.sums, FILES[0]: "0" * 64}
    with pytest.raises(ChecksumError, match="not installed"):
        download_weights(str(target), base_url=server.url, progress=False, checksums=wrong)
    assert sorted(os.listdir(target)) == []


def test_the_published_sums_are_checked_by_default(server, tmp_path):
    # The mirror's files are not DWPose's: without sums of its own, nothing is installed.
    assert sorted(SHA256) == sorted(FILES)
    target = tmp_path / "models"
    with pytest.raises(ChecksumError, match=SHA256[FILES[0]]):
        download_weights(str(target), base_url=server.url, progress=False)
    assert os.listdir(target) == []


def test_a_tampered_file_fails_verification(server, tmp_path):
    target = tmp_path / "models"
    download_weights(str(target), base_url=server.url, progress=False, checksums=server.sums)
    (target / FILES[1]).write_bytes(b"evil")
    with pytest.raises(ChecksumError):
        verify_weights(str(target))


def test_a_missing_file_upstream_is_an_error(server, tmp_path):
    with pytest.raises(Exception, match="404"):
        download_weights(str(tmp_path / "m"), base_url=server.url + "/nope", progress=False)


def test_flask_models_download(server, tmp_path, app):
    target = tmp_path / "cli-models"
    runner = app.test_cli_runner()
    args = ["models", "download", "--dir", str(target), "--base-url", server.url]
    refused = runner.invoke(args=args)
    assert refused.exit_code == 1 and "not installed" in refused.output
    assert os.listdir(target) == []
    sums = [arg for name, digest in server.sums.items() for arg in ("--sha256", f"{name}={digest}")]
    result = runner.invoke(args=args + sums)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(target)) == sorted([*FILES, "SHA256SUMS"])
    assert runner.invoke(args=args + ["--sha256", "x=1"]).exit_code == 2
