"""File storage: uploaded inputs and result images, under unguessable keys.

Two backends behind one small interface (``put``, ``stat``, ``open``, ``read``, ``delete``,
``url_for``, ``key_from_url``, ``presigned_url``): a local directory (the default) and an
S3-compatible bucket (``POSEHOOK_STORAGE_URL=s3://bucket/prefix``). Either way a file's public
URL is ours, ``<public base>/files/<key>``: served from here, or answered with a redirect to a
short-lived presigned URL when ``POSEHOOK_STORAGE_PRESIGN`` is set.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, unquote

_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}(\.[a-z0-9]{1,5})?$")

EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
    "image/bmp": ".bmp", "application/json": ".json",
}
DELETE_BATCH = 1000
"""S3's DeleteObjects takes at most this many keys per call."""


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
            key: str | None = None) -> StoredFile:
        """Store bytes under a new (or a reserved) key; the write is atomic (temp + rename)."""
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
            json.dump({"content_type": content_type, "file_name": name}, fh)
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


class S3Storage(_Storage):
    """Files in an S3-compatible bucket under ``prefix/``; type and name kept as metadata.

    Credentials and, unless given here, the region and endpoint come from boto3's usual
    sources (``AWS_ACCESS_KEY_ID``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, profiles, roles).
    """

    def __init__(self, url: str, public_base_url: str, *, endpoint_url: str = "",
                 region: str = "", presign: int = 0) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_url(url)
        self.base_url = public_base_url.rstrip("/")
        self.presign = presign
        # Path-style addressing: what S3-compatible servers (MinIO, Ceph, moto) all take.
        config = Config(s3={"addressing_style": "path"} if endpoint_url else {},
                        signature_version="s3v4",
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5, read_timeout=30)
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config)

    def _object(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def put(self, data: bytes, content_type: str, file_name: str = "",
            key: str | None = None) -> StoredFile:
        """Store bytes under a new (or a reserved) key (one PutObject: atomic)."""
        key = key or new_key(content_type)
        if not is_key(key):
            raise ValueError("invalid storage key")
        name = safe_file_name(file_name) or key
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data,
                               ContentType=content_type,
                               Metadata={"file-name": quote(name, safe="")})
        return StoredFile(key=key, url=self.url_for(key), content_type=content_type,
                          file_name=name, file_size=len(data))

    def _facts(self, key: str, head: dict[str, Any]) -> StoredFile:
        name = unquote(head.get("Metadata", {}).get("file-name", "")) or key
        modified = head.get("LastModified")
        return StoredFile(key=key, url=self.url_for(key),
                          content_type=head.get("ContentType") or "application/octet-stream",
                          file_name=name, file_size=int(head.get("ContentLength", 0)),
                          modified=modified.timestamp() if modified else 0.0,
                          etag=str(head.get("ETag", "")).strip('"'))

    def stat(self, key: str) -> StoredFile | None:
        """Return the facts of a stored file (HeadObject), or None."""
        if not is_key(key):
            return None
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise
        return self._facts(key, head)

    def open(self, key: str) -> tuple[IO[bytes], StoredFile] | None:
        """Return (streaming body, facts) of a stored file (GetObject), or None."""
        if not is_key(key):
            return None
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.NoSuchKey:
            return None
        except self.client.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise
        return got["Body"], self._facts(key, got)

    def delete(self, keys: Iterable[str]) -> int:
        """Delete objects in batches (DeleteObjects); a missing object counts as deleted."""
        wanted = [k for k in keys if is_key(k)]
        for start in range(0, len(wanted), DELETE_BATCH):
            batch = wanted[start:start + DELETE_BATCH]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self._object(k)} for k in batch], "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                raise OSError(f"S3 refused to delete {len(errors)} object(s): "
                              f"{errors[0].get('Code')}")
        return len(wanted)

    def presigned_url(self, key: str) -> str | None:
        """Return a GET URL signed for ``presign`` seconds (None when presigning is off)."""
        if not self.presign or not is_key(key):
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._object(key)},
            ExpiresIn=self.presign)


def _missing(exc: Any) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Return (bucket, key prefix ending in '/' or empty) of ``s3://bucket/prefix``."""
    if not url.startswith("s3://"):
        raise ValueError("an S3 storage URL starts with s3://")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def is_key(key: str) -> bool:
    """Return True for a syntactically valid storage key (no paths, no dots but the suffix)."""
    return bool(_KEY.match(key))
