"""Download and check the DWPose-family weights (by command only, never at import or load).

What to fetch comes from ``registry.MODELS``. Downloads stream to a temporary file, show a
progress bar, and are checked against a SHA-256 before anything is installed; a mismatch
leaves nothing behind. An archive (openmmlab's onnx_sdk zips) is checked, then its ONNX file is
extracted under the registry's file name. A model without a published hash is installed only
with a hash the caller trusts, or when the caller asks to trust the first download; either way
the installed file's hash is recorded in ``SHA256SUMS`` and checked by ``verify_weights``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping

import httpx

from app.engine.dwpose.registry import DEFAULT_DETECTOR, DEFAULT_POSE, MODELS, ModelSpec

SUMS_FILE = "SHA256SUMS"
MAX_MODEL_BYTES = 2 * 1024 ** 3  # no published model is near this; a bigger file is refused
FILES = (MODELS[DEFAULT_DETECTOR].file, MODELS[DEFAULT_POSE].file)
# The published sums of the default pair, by installed file name.
SHA256 = {MODELS[name].file: MODELS[name].sha256 for name in (DEFAULT_DETECTOR, DEFAULT_POSE)}


class ChecksumError(RuntimeError):
    """A downloaded or installed file does not have the SHA-256 it must have."""


class UnpinnedError(ChecksumError):
    """A model has no known SHA-256 and the caller neither gave one nor chose to trust it."""


def read_sums(model_dir: str) -> dict[str, str]:
    """Return the sums recorded beside the weights (installed file name → SHA-256)."""
    path = os.path.join(model_dir, SUMS_FILE)
    if not os.path.exists(path):
        return {}
    sums = {}
    with open(path) as fh:
        for line in fh:
            digest, _, name = line.strip().partition("  ")
            if digest and name:
                sums[name] = digest
    return sums


def _write_sums(model_dir: str, sums: Mapping[str, str]) -> None:
    """Replace the sums file whole (a crash or a second download never leaves half of one)."""
    path = os.path.join(model_dir, SUMS_FILE)
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".sums-")
    try:
        with os.fdopen(fd, "w") as fh:
            for name, digest in sorted(sums.items()):
                fh.write(f"{digest}  {name}\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_sha256(path: str) -> str:
    """Return the SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream(url: str, fh, progress: bool, label: str) -> str:
    """Write what ``url`` serves into ``fh``; return its SHA-256 (at most MAX_MODEL_BYTES)."""
    digest, size = hashlib.sha256(), 0
    with httpx.stream("GET", url, follow_redirects=True,
                      timeout=httpx.Timeout(60, connect=10)) as answer:
        answer.raise_for_status()
        total = int(answer.headers.get("Content-Length", 0)) or None
        if total and total > MAX_MODEL_BYTES:
            raise ChecksumError(f"{label}: {url} is {total} bytes, over {MAX_MODEL_BYTES}")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=label)
        for chunk in answer.iter_bytes(1 << 20):
            size += len(chunk)
            if size > MAX_MODEL_BYTES:
                raise ChecksumError(f"{label}: {url} sent more than {MAX_MODEL_BYTES} bytes")
            fh.write(chunk)
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return digest.hexdigest()


def _extract(archive: str, member: str, fh) -> None:
    """Copy the archive's file named ``member`` (in any folder) into ``fh``, bounded in size."""
    with zipfile.ZipFile(archive) as zipped:
        found = [i for i in zipped.infolist() if os.path.basename(i.filename) == member]
        if len(found) != 1:
            raise ChecksumError(f"{archive}: expected one {member} in the archive, "
                                f"found {len(found)}")
        if found[0].file_size > MAX_MODEL_BYTES:
            raise ChecksumError(f"{member} in the archive is over {MAX_MODEL_BYTES} bytes")
        with zipped.open(found[0]) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                fh.write(block)


def download_model(name: str, model_dir: str, *, base_url: str | None = None,
                   expected: str | None = None, trust_first: bool = False,
                   progress: bool = True) -> tuple[str, str]:
    """Download one registry model into ``model_dir``; return (installed path, its SHA-256).

    ``expected`` (else the registry's hash) is what the download must hash to. With neither,
    ``trust_first`` must be set, or UnpinnedError is raised before anything is fetched.
    ``base_url`` is a mirror serving the same file names as the model's home.
    """
    model: ModelSpec = MODELS[name]
    expected = expected or model.sha256
    if expected is None and not trust_first:
        raise UnpinnedError(
            f"{name}: no SHA-256 is published for {model.url}; pass the hash of a copy you "
            f"trust (--sha256 {name}=<64 hex digits>) or trust this first download "
            f"(--trust-first-download: its hash is recorded and checked from then on)")
    url = model.url if base_url is None else f"{base_url.rstrip('/')}/{model.url.rsplit('/')[-1]}"
    target = os.path.join(model_dir, model.file)
    os.makedirs(model_dir, exist_ok=True)
    fd, fetched = tempfile.mkstemp(dir=model_dir, prefix=".download-")
    unpacked = fetched + ".onnx"
    try:
        with os.fdopen(fd, "wb") as fh:
            actual = _stream(url, fh, progress, model.file)
        if expected is not None and actual != expected:
            raise ChecksumError(f"{name}: SHA-256 {actual} is not the expected {expected}; "
                                f"the file was not installed")
        if model.member:
            with open(unpacked, "wb") as fh:
                _extract(fetched, model.member, fh)
            os.replace(unpacked, target)
        else:
            os.replace(fetched, target)
        return target, file_sha256(target)
    finally:
        for leftover in (fetched, unpacked):
            if os.path.exists(leftover):
                os.unlink(leftover)


def download_weights(model_dir: str, *, names: Iterable[str] = (DEFAULT_DETECTOR, DEFAULT_POSE),
                     base_url: str | None = None, progress: bool = True,
                     checksums: Mapping[str, str] | None = None,
                     trust_first: bool = False) -> list[str]:
    """Download the missing models ``names`` into ``model_dir``; return all their paths.

    ``checksums`` maps a registry name or an installed file name to the SHA-256 its download
    must have (a mirror's own build, or the hash of a model with none published).
    """
    checksums = dict(checksums or {})
    recorded = read_sums(model_dir)
    paths = []
    for name in names:
        model = MODELS[name]
        target = os.path.join(model_dir, model.file)
        given = checksums.get(name) or checksums.get(model.file)
        if not os.path.exists(target):
            target, recorded[model.file] = download_model(
                name, model_dir, base_url=base_url, expected=given, trust_first=trust_first,
                progress=progress)
            _write_sums(model_dir, recorded)
        else:  # installed before: it must still be what its known hash says
            expected = given or recorded.get(model.file) or (None if model.member
                                                             else model.sha256)
            if expected and file_sha256(target) != expected:
                raise ChecksumError(f"{target} does not match its SHA-256 {expected}: delete "
                                    "it and download it again")
        paths.append(target)
    return paths


def verify_weights(model_dir: str, files: Iterable[str] = FILES, *,
                   published: bool = True) -> None:
    """Check installed files against their recorded sums (and, with ``published``, a file with
    none recorded against the registry's); raise ChecksumError on a mismatch."""
    recorded = read_sums(model_dir)
    known = {m.file: m.sha256 for m in MODELS.values() if m.sha256 and not m.member}
    for name in files:
        expected = recorded.get(name) or (known.get(name) if published else None)
        if expected and file_sha256(os.path.join(model_dir, name)) != expected:
            raise ChecksumError(f"{os.path.join(model_dir, name)} does not match its SHA-256 "
                                f"{expected}: download it again (flask models download)")
