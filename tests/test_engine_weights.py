"""Weight download: streamed, checked against SHA-256, installed atomically (local file server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import zipfile

import pytest

from app.engine.dwpose.registry import MODELS
from app.engine.dwpose.weights import (
    FILES,
    SHA256,
    ChecksumError,
    UnpinnedError,
    download_model,
    download_weights,
    read_sums,
    verify_weights,
)
from tests import onnx_models

ARCHIVED = "dwpose-m-256"  # an openmmlab onnx_sdk zip with no published SHA-256


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving two fake weight files."""
    root = tmp_path / "remote"
    root.mkdir()
    for name in FILES:
        (root / name).write_bytes(name.encode() * 1000)
    # An archive laid out like openmmlab's: the model as end2end.onnx in a folder of its own.
    model = tmp_path / "end2end.onnx"
    onnx_models.pose(str(model), *onnx_models.peaks({0: (96, 64)}, size=(192, 256)),
                     size=(192, 256))
    archive = root / MODELS[ARCHIVED].url.rsplit("/")[-1]
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("rtmpose-m/deploy.json", "{}")
        zipped.write(model, "rtmpose-m/end2end.onnx")
    with zipfile.ZipFile(root / "empty.zip", "w") as zipped:
        zipped.writestr("readme.txt", "no model here")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    srv.sums = {n: sha256((root / n).read_bytes()) for n in FILES}
    srv.archive_sum, srv.model_bytes = sha256(archive.read_bytes()), model.read_bytes()
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


def test_downloading_again_checks_what_is_installed_instead_of_saying_ok(server, tmp_path, app):
    target = tmp_path / "models"
    download_weights(str(target), base_url=server.url, progress=False, checksums=server.sums)
    (target / FILES[0]).write_bytes(b"junk")  # changed after its hash was recorded
    runner = app.test_cli_runner()
    again = runner.invoke(args=["models", "download", "--dir", str(target),
                                "--base-url", server.url])
    assert again.exit_code == 1 and "does not match" in again.output, again.output
    assert "ok " not in again.output
    (target / "SHA256SUMS").unlink()  # no record left: the published hash still holds
    with pytest.raises(ChecksumError, match=SHA256[FILES[0]]):
        download_weights(str(target), base_url=server.url, progress=False)
    hex_only = runner.invoke(args=["models", "download", "--dir", str(target),
                                   "--sha256", f"{FILES[0]}={'g' * 64}"])
    assert hex_only.exit_code == 2 and "64 hex digits" in hex_only.output


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


def test_a_model_with_no_published_sum_is_not_fetched_without_a_hash_or_trust(server, tmp_path):
    assert MODELS[ARCHIVED].sha256 is None
    target = tmp_path / "models"
    with pytest.raises(UnpinnedError, match="--trust-first-download") as refused:
        download_weights(str(target), names=[ARCHIVED], base_url=server.url, progress=False)
    assert f"--sha256 {ARCHIVED}=" in str(refused.value)
    assert not target.exists() or os.listdir(target) == []


def test_an_archive_is_checked_then_its_model_extracted_under_the_registry_name(server,
                                                                              tmp_path):
    target = tmp_path / "models"
    paths = download_weights(str(target), names=[ARCHIVED], base_url=server.url,
                             progress=False, checksums={ARCHIVED: server.archive_sum})
    assert paths == [str(target / "dwpose-m-256.onnx")]
    assert (target / "dwpose-m-256.onnx").read_bytes() == server.model_bytes
    assert sorted(os.listdir(target)) == ["SHA256SUMS", "dwpose-m-256.onnx"]
    # What is recorded, and verified later, is the installed model's hash, not the archive's.
    assert read_sums(str(target)) == {"dwpose-m-256.onnx": sha256(server.model_bytes)}
    verify_weights(str(target), ["dwpose-m-256.onnx"])


def test_an_archive_with_the_wrong_sum_installs_nothing(server, tmp_path):
    target = tmp_path / "models"
    with pytest.raises(ChecksumError, match="not installed"):
        download_model(ARCHIVED, str(target), base_url=server.url, expected="1" * 64,
                       progress=False)
    assert os.listdir(target) == []


def test_trusting_the_first_download_records_its_hash_and_checks_it_from_then_on(server,
                                                                               tmp_path):
    target = tmp_path / "models"
    download_weights(str(target), names=[ARCHIVED], base_url=server.url, progress=False,
                     trust_first=True)
    verify_weights(str(target), ["dwpose-m-256.onnx"])
    (target / "dwpose-m-256.onnx").write_bytes(b"swapped")
    with pytest.raises(ChecksumError, match="dwpose-m-256.onnx"):
        verify_weights(str(target), ["dwpose-m-256.onnx"])


def test_an_archive_without_the_model_installs_nothing(server, tmp_path, monkeypatch):
    empty = MODELS[ARCHIVED]._replace(url=server.url + "/empty.zip")
    monkeypatch.setitem(MODELS, "empty", empty)
    target = tmp_path / "models"
    with pytest.raises(ChecksumError, match="expected one end2end.onnx"):
        download_model("empty", str(target), trust_first=True, progress=False)
    assert os.listdir(target) == []


def test_flask_models_download_of_registry_models(server, tmp_path, app):
    target = tmp_path / "cli-models"
    runner = app.test_cli_runner()
    args = ["models", "download", "--dir", str(target), "--base-url", server.url,
            "--model", ARCHIVED]
    refused = runner.invoke(args=args)
    assert refused.exit_code == 1 and "no SHA-256 is published" in refused.output
    trusted = runner.invoke(args=args + ["--trust-first-download"])
    assert trusted.exit_code == 0, trusted.output
    assert sha256(server.model_bytes) in trusted.output
    assert runner.invoke(args=args[:-1] + ["dwpose-xl"]).exit_code == 2


def test_the_engine_refuses_weights_that_changed_since_they_were_downloaded(server, tmp_path):
    from app.engine import load_engine
    from tests.test_engine_dwpose_models import install

    target = tmp_path / "models"
    download_weights(str(target), names=[ARCHIVED], base_url=server.url, progress=False,
                     trust_first=True)
    install(target, "yolox-tiny", "dwpose-m-256")  # a different model in the downloaded place
    with pytest.raises(ChecksumError, match="dwpose-m-256.onnx does not match"):
        load_engine("dwpose", str(target), ("yolox-tiny", "dwpose-m-256"))
    (target / "SHA256SUMS").unlink()  # files put there by hand are the operator's to vouch for
    assert load_engine("dwpose", str(target), ("yolox-tiny", "dwpose-m-256")).name == "dwpose"
