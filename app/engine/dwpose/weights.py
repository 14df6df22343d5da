"""Find and download the DWPose weights (by command only, never at import or load).

The files live on Hugging Face (``yzd-v/DWPose``, the home DWPose's README points to).
Downloads stream to a temporary file, show a progress bar, and are checked against
SHA-256 sums before they are moved into place; a mismatch leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping

import httpx

BASE_URL = "https://huggingface.co/yzd-v/DWPose/resolve/main"
FILES = ("yolox_l.onnx", "dw-ll_ucoco_384.onnx")
# The published files' SHA-256 sums (yzd-v/DWPose at main; the same sums are pinned by many
# independent projects that use these weights). A mirror must serve the same bytes, or be
# given its own sums explicitly (``checksums``, ``flask models download --sha256``).
SHA256: dict[str, str] = {
    "yolox_l.onnx": "7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411",
    "dw-ll_ucoco_384.onnx": "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843",
}
SUMS_FILE = "SHA256SUMS"


class ChecksumError(RuntimeError):
    """A downloaded file does not have the SHA-256 it must have."""


def read_sums(model_dir: str) -> dict[str, str]:
    """Return the sums recorded beside the weights."""
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
    with open(os.path.join(model_dir, SUMS_FILE), "w") as fh:
        for name, digest in sorted(sums.items()):
            fh.write(f"{digest}  {name}\n")


def _fetch(url: str, target: str, expected: str | None, progress: bool) -> str:
    """Stream ``url`` into ``target`` atomically; return its SHA-256; raise on mismatch."""
    directory = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download-")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as fh, httpx.stream("GET", url, follow_redirects=True,
                                                     timeout=httpx.Timeout(60, connect=10)) as r:
            r.raise_for_status()
            total = int(r.headers.get("Content-Length", 0)) or None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(target))
            for chunk in r.iter_bytes(1 << 20):
                fh.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        actual = digest.hexdigest()
        if expected and actual != expected:
            raise ChecksumError(f"{os.path.basename(target)}: SHA-256 {actual} is not the "
                                f"expected {expected}; the file was not installed")
        os.replace(tmp, target)
        return actual
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_weights(model_dir: str, *, base_url: str | None = None, progress: bool = True,
                     checksums: Mapping[str, str] | None = None) -> list[str]:
    """Download the missing weight files into ``model_dir``; return the paths of all of them."""
    os.makedirs(model_dir, exist_ok=True)
    recorded = read_sums(model_dir)
    expected = {**SHA256, **recorded, **(checksums or {})}
    paths = []
    for name in FILES:
        target = os.path.join(model_dir, name)
        if not os.path.exists(target):
            url = f"{(base_url or BASE_URL).rstrip('/')}/{name}"
            recorded[name] = _fetch(url, target, expected.get(name), progress)
        paths.append(target)
    _write_sums(model_dir, recorded)
    return paths


def verify_weights(model_dir: str, checksums: Mapping[str, str] | None = None) -> None:
    """Check the installed files against their sums; raise ChecksumError on a mismatch."""
    expected = {**SHA256, **read_sums(model_dir), **(checksums or {})}
    for name in FILES:
        if name not in expected:
            continue
        digest = hashlib.sha256()
        with open(os.path.join(model_dir, name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected[name]:
            raise ChecksumError(f"{name} does not match its SHA-256 {expected[name]}")
