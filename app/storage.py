"""File storage: uploaded inputs and result images, under unguessable keys.

Two backends behind one small interface (``put``, ``stat``, ``open``, ``read``, ``delete``,
``url_for``, ``key_from_url``, ``presigned_url``, and fal's multipart uploads: ``put_part``,
``drop_part``, ``assemble``, ``drop_stale_parts``): a local directory (the default) and an
S3-compatible bucket (``POSEHOOK_STORAGE_URL=s3://bucket/prefix``). Either way a file's public
URL is ours, ``<public base>/files/<key>``: served from here, or answered with a redirect to a
short-lived presigned URL when ``POSEHOOK_STORAGE_PRESIGN`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

UPLOAD_SLOT_SECONDS = 3600
"""How long a fal-style upload slot (and a multipart upload's parts) waits for its bytes."""
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}(\.[a-z0-9]{1,5})?$")

EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
    "image/bmp": ".bmp", "application/json": ".json",
}


@dataclass(frozen=True)
class StoredFile:
    """What we know of a stored file (``modified``: seconds since the epoch, 0 if unknown)."""

    key: str
    url: str
    content_type: str
    file_name: str
    file_size: int
    modified: float = 0.0
    etag: str = ""


def safe_file_name(name: str) -> str:
    """Return a file name fit for a Content-Disposition header: no controls, no paths, short."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return kept.strip(" .")[:200]


def new_key(content_type: str) -> str:
    """Return a fresh unguessable key (192 random bits) with the type's suffix."""
    return secrets.token_urlsafe(24) + EXTENSIONS.get(content_type, "")


class _Storage:
    """What both backends share: our URL space for keys."""

    base_url: str

    def url_for(self, key: str) -> str:
        """Return the public URL of a key."""
        return f"{self.base_url}/files/{key}"

    def key_from_url(self, url: str) -> str | None:
        """Return the key when ``url`` is one of our file URLs, else None."""
        prefix = f"{self.base_url}/files/"
        if url.startswith(prefix):
            key = url[len(prefix):].split("?", 1)[0]
            return key if is_key(key) else None
        return None

    def open(self, key: str) -> tuple[IO[bytes], StoredFile] | None:  # pragma: no cover
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        """Return a stored file's bytes, or None."""
        found = self.open(key)
        if found is None:
            return None
        with found[0] as fh:
            return fh.read()

    def presigned_url(self, key: str) -> str | None:
        """Return a short-lived direct URL of the file, or None (served by us)."""
        return None

    def path_of(self, key: str) -> str | None:
        """Return the local path of a stored file (served with send_file), or None."""
        return None


class LocalStorage(_Storage):
    """Files in a local directory; the key is random, the content type kept beside it."""

    def __init__(self, root: str, public_base_url: str) -> None:
        self.root = os.path.abspath(root)  # send_file would resolve a relative one under app/
        self.base_url = public_base_url.rstrip("/")
        os.makedirs(root, exist_ok=True)

    def put(self, data: bytes, content_type: str, file_name: str = "",
            key: str | None = None, expires_at: float | None = None) -> StoredFile:
        """Store bytes under a new (or a reserved) key; the write is atomic (temp + rename).

        A file with ``expires_at`` is gone for every reader from then on (and removed then).
        """
        key = key or new_key(content_type)
        if not is_key(key):
            raise ValueError("invalid storage key")
        path = os.path.join(self.root, key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        name = safe_file_name(file_name) or key
        with open(path + ".meta", "w") as fh:
            json.dump({"content_type": content_type, "file_name": name,
                       **({"expires_at": expires_at} if expires_at else {})}, fh)
        return StoredFile(key=key, url=self.url_for(key), content_type=content_type,
                          file_name=name, file_size=len(data))

    def path_of(self, key: str) -> str | None:
        """Return the path of a stored file (served with send_file), or None."""
        if not is_key(key):
            return None
        path = os.path.join(self.root, key)
        return path if os.path.isfile(path) else None

    def stat(self, key: str) -> StoredFile | None:
        """Return the facts of a stored file, or None."""
        path = self.path_of(key)
        if path is None:
            return None
        try:
            with open(path + ".meta") as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            meta = {"content_type": "application/octet-stream", "file_name": key}
        if meta.get("expires_at") and time.time() >= meta["expires_at"]:
            for gone in (path, path + ".meta"):
                with contextlib.suppress(OSError):
                    os.unlink(gone)
            return None
        info = os.stat(path)
        return StoredFile(key=key, url=self.url_for(key), content_type=meta["content_type"],
                          file_name=meta.get("file_name", key), file_size=info.st_size,
                          modified=info.st_mtime)

    def open(self, key: str) -> tuple[IO[bytes], StoredFile] | None:
        """Return (open binary file, facts) of a stored file, or None; the caller closes it."""
        stored = self.stat(key)
        if stored is None:
            return None
        try:
            return open(os.path.join(self.root, key), "rb"), stored
        except FileNotFoundError:
            return None

    def put_part(self, upload: str, number: int, data: bytes) -> str:
        """Keep one part of a multipart upload; return its etag (a hash of its bytes).

        Written to a temporary file and renamed: a join that has the earlier part open keeps
        reading it whole.
        """
        folder = self._parts(upload)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, os.path.join(folder, str(int(number))))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return hashlib.sha256(data).hexdigest()[:32]

    def drop_part(self, upload: str, number: int) -> None:
        """Remove one part (a part refused once stored), and its folder if it was the last."""
        folder = self._parts(upload)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, str(int(number))))
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty: the upload's other parts stay

    def assemble(self, upload: str, parts: list[tuple[int, str]], content_type: str,
                 file_name: str, key: str, expires_at: float | None = None) -> StoredFile | None:
        """Join the named parts, in order, into one stored file; None when one is missing
        or its etag is not the one it was given (the parts are dropped either way)."""
        folder = self._parts(upload)
        if not is_key(key):
            raise ValueError("invalid storage key")
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for number, etag in parts:
                    digest = hashlib.sha256()
                    with open(os.path.join(folder, str(int(number))), "rb") as part:
                        while chunk := part.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                    if digest.hexdigest()[:32] != etag:
                        raise ValueError(f"part {number} is not the one uploaded")
                out.flush()
                os.fsync(out.fileno())
        except (OSError, ValueError):
            os.unlink(tmp)
            return None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        path = os.path.join(self.root, key)
        os.replace(tmp, path)
        name = safe_file_name(file_name) or key
        with open(path + ".meta", "w") as fh:
            json.dump({"content_type": content_type, "file_name": name,
                       **({"expires_at": expires_at} if expires_at else {})}, fh)
        return StoredFile(key=key, url=self.url_for(key), content_type=content_type,
                          file_name=name, file_size=size)

    def drop_stale_parts(self, before: float) -> int:
        """Remove the parts of multipart uploads untouched since ``before``; return how many."""
        root = os.path.join(self.root, ".parts")
        count = 0
        for name in os.listdir(root) if os.path.isdir(root) else ():
            folder = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if os.path.getmtime(folder) < before:
                    shutil.rmtree(folder)
                    count += 1
        return count

    def _parts(self, upload: str) -> str:
        if not is_key(upload):
            raise ValueError("invalid upload id")
        return os.path.join(self.root, ".parts", upload)

    def list_files(self) -> Iterator[tuple[str, int]]:
        """Yield (key, size) of every stored file (not metadata, parts or files being written)."""
        with os.scandir(self.root) as entries:
            for entry in entries:
                if is_key(entry.name) and not entry.name.endswith(".meta") and entry.is_file():
                    with contextlib.suppress(OSError):  # deleted meanwhile
                        yield entry.name, entry.stat().st_size

    def delete(self, keys: Iterable[str]) -> int:
        """Delete files (and their metadata); a file already gone counts as deleted."""
        count = 0
        for key in keys:
            if not is_key(key):
                continue
            for path in (os.path.join(self.root, key), os.path.join(self.root, key) + ".meta"):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
            count += 1
        return count


def is_key(key: str) -> bool:
    """Return True for a syntactically valid storage key (no paths, no dots but the suffix)."""
    return bool(_KEY.match(key))
