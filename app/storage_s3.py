"""Files in an S3-compatible bucket, behind the same interface as ``app.storage``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import IO, Any
from urllib.parse import quote, unquote

from app.storage import StoredFile, _Storage, is_key, new_key, safe_file_name

DELETE_BATCH = 1000
"""S3's DeleteObjects takes at most this many keys per call."""


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
            key: str | None = None, expires_at: float | None = None) -> StoredFile:
        """Store bytes under a new (or a reserved) key (one PutObject: atomic).

        A file with ``expires_at`` is gone for every reader from then on (the janitor deletes
        it when its owner's expiry comes).
        """
        key = key or new_key(content_type)
        if not is_key(key):
            raise ValueError("invalid storage key")
        name = safe_file_name(file_name) or key
        metadata = {"file-name": quote(name, safe="")}
        if expires_at:
            metadata["expires-at"] = repr(expires_at)
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data,
                               ContentType=content_type, Metadata=metadata)
        return StoredFile(key=key, url=self.url_for(key), content_type=content_type,
                          file_name=name, file_size=len(data))

    @staticmethod
    def _expired(head: dict[str, Any]) -> bool:
        expires = head.get("Metadata", {}).get("expires-at", "")
        try:
            return bool(expires) and time.time() >= float(expires)
        except ValueError:
            return False

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
        return None if self._expired(head) else self._facts(key, head)

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
        if self._expired(got):
            got["Body"].close()
            return None
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
