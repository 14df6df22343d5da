"""Files in an S3-compatible bucket, behind the same interface as ``app.storage``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import quote, unquote

from app.storage import StoredFile, _Storage, is_key, new_key, safe_file_name

DELETE_BATCH = 1000
"""S3's DeleteObjects takes at most this many keys per call."""
MIN_PART = 5 * 1024 * 1024
"""S3's smallest part of a multipart upload, but for the last."""
JOIN_PART = 8 * 1024 * 1024
"""The size of the parts we send when we join parts too small for S3 ourselves."""
COPY_THREADS = 8
"""Parts S3 copies at once when it joins a multipart upload."""
_NOT_THE_PART = ("PreconditionFailed", "412", "404", "NoSuchKey", "NotFound")
"""What S3 answers when a part is gone or was sent again since it was named."""


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
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data,
                               ContentType=content_type, Metadata=_metadata(name, expires_at))
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
        self._delete_objects([self._object(k) for k in wanted])
        return len(wanted)

    def list_files(self) -> Iterator[tuple[str, int]]:
        """Yield (key, size) of every stored file under the prefix (not multipart parts)."""
        for item in self._listed(self.prefix):
            key = item["Key"][len(self.prefix):]
            if is_key(key):
                yield key, int(item["Size"])

    def _delete_objects(self, names: list[str]) -> None:
        for start in range(0, len(names), DELETE_BATCH):
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": n} for n in names[start:start + DELETE_BATCH]],
                "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                raise OSError(f"S3 refused to delete {len(errors)} object(s): "
                              f"{errors[0].get('Code')}")

    # -- fal-style multipart uploads: each part an object under .parts/, joined by S3 ----------

    def _part(self, upload: str, number: int | None = None) -> str:
        if not is_key(upload):
            raise ValueError("invalid upload id")
        folder = f"{self.prefix}.parts/{upload}/"
        return folder if number is None else f"{folder}{int(number)}"

    def put_part(self, upload: str, number: int, data: bytes) -> str:
        """Keep one part of a multipart upload as an object of its own; return its ETag."""
        answer = self.client.put_object(Bucket=self.bucket, Key=self._part(upload, number),
                                        Body=data)
        return str(answer["ETag"]).strip('"')

    def drop_part(self, upload: str, number: int) -> None:
        """Remove one part (a part refused once stored)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._part(upload, number))

    def assemble(self, upload: str, parts: list[tuple[int, str]], content_type: str,
                 file_name: str, key: str, expires_at: float | None = None) -> StoredFile | None:
        """Join the named parts, in order, into one object (an S3 multipart upload); None when
        one is missing or its etag is not the one it was given (the parts are dropped either way).

        When every part but the last has S3's 5 MiB (fal's clients send 10 MiB), S3 copies them
        itself (UploadPartCopy); smaller ones are read and sent again here, 8 MiB at a time.
        """
        if not is_key(key):
            raise ValueError("invalid storage key")
        name = safe_file_name(file_name) or key
        target = {"Bucket": self.bucket, "Key": self._object(key)}
        upload_id = ""
        try:
            sizes = self._part_sizes(upload, parts)
            if sizes is None:
                return None
            upload_id = self.client.create_multipart_upload(
                **target, ContentType=content_type,
                Metadata=_metadata(name, expires_at))["UploadId"]
            join = self._copy_parts if all(s >= MIN_PART for s in sizes[:-1]) else self._join
            done = join(upload, parts, {**target, "UploadId": upload_id})
            self.client.complete_multipart_upload(**target, UploadId=upload_id,
                                                  MultipartUpload={"Parts": done})
            upload_id = ""
        except self.client.exceptions.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_THE_PART:
                return None
            raise
        finally:
            if upload_id:
                self.client.abort_multipart_upload(**target, UploadId=upload_id)
            self._drop_parts(upload)
        return StoredFile(key=key, url=self.url_for(key), content_type=content_type,
                          file_name=name, file_size=sum(sizes))

    def _part_sizes(self, upload: str, parts: list[tuple[int, str]]) -> list[int] | None:
        """Return the named parts' sizes when each is there with its etag, else None.

        One listing (a thousand parts a call), not a HEAD per part, and the check stops at
        the first part that is missing or another one.
        """
        kept = {item["Key"]: item for item in self._listed(self._part(upload))}
        sizes = []
        for number, etag in parts:
            item = kept.get(self._part(upload, number))
            if item is None or str(item.get("ETag", "")).strip('"') != etag:
                return None
            sizes.append(int(item["Size"]))
        return sizes

    def _copy_parts(self, upload: str, parts: list[tuple[int, str]],
                    target: dict[str, str]) -> list[dict[str, Any]]:
        """Copy each part into the upload inside the bucket, if it is still the one named
        (COPY_THREADS at a time: a 1 GiB file is a hundred copies, within one HTTP call)."""
        from concurrent.futures import ThreadPoolExecutor

        def copy(position: int, part: tuple[int, str]) -> dict[str, Any]:
            number, etag = part
            answer = self.client.upload_part_copy(
                **target, PartNumber=position, CopySourceIfMatch=f'"{etag}"',
                CopySource={"Bucket": self.bucket, "Key": self._part(upload, number)})
            return {"PartNumber": position, "ETag": answer["CopyPartResult"]["ETag"]}

        with ThreadPoolExecutor(COPY_THREADS) as pool:
            return list(pool.map(copy, range(1, len(parts) + 1), parts))

    def _join(self, upload: str, parts: list[tuple[int, str]],
              target: dict[str, str]) -> list[dict[str, Any]]:
        """Read the parts in order and send them on in parts of JOIN_PART bytes."""
        done: list[dict[str, Any]] = []
        buffer = bytearray()

        def send() -> None:
            answer = self.client.upload_part(**target, PartNumber=len(done) + 1,
                                             Body=bytes(buffer))
            done.append({"PartNumber": len(done) + 1, "ETag": answer["ETag"]})
            buffer.clear()

        for number, etag in parts:
            body = self.client.get_object(Bucket=self.bucket, Key=self._part(upload, number),
                                          IfMatch=f'"{etag}"')["Body"]
            with body:
                while chunk := body.read(1 << 20):
                    buffer += chunk
                    if len(buffer) >= JOIN_PART:
                        send()
        if buffer or not done:
            send()
        return done

    def _listed(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=prefix)
        return (item for page in pages for item in page.get("Contents", []))

    def _drop_parts(self, upload: str) -> None:
        self._delete_objects([o["Key"] for o in self._listed(self._part(upload))])

    def drop_stale_parts(self, before: float) -> int:
        """Remove the parts of multipart uploads untouched since ``before`` (and S3 uploads a
        crash left open); return how many uploads' parts went."""
        newest: dict[str, float] = {}
        names: dict[str, list[str]] = {}
        for item in self._listed(f"{self.prefix}.parts/"):
            upload = item["Key"][len(self.prefix) + len(".parts/"):].split("/", 1)[0]
            names.setdefault(upload, []).append(item["Key"])
            newest[upload] = max(newest.get(upload, 0.0), item["LastModified"].timestamp())
        stale = [u for u, at in newest.items() if at < before]
        self._delete_objects([n for u in stale for n in names[u]])
        open_uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        for left in open_uploads.get("Uploads", []):
            if left["Initiated"].timestamp() < before:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=left["Key"],
                                                   UploadId=left["UploadId"])
        return len(stale)

    def presigned_url(self, key: str) -> str | None:
        """Return a GET URL signed for ``presign`` seconds (None when presigning is off)."""
        if not self.presign or not is_key(key):
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._object(key)},
            ExpiresIn=self.presign)


def _metadata(name: str, expires_at: float | None) -> dict[str, str]:
    """The object metadata we keep: the file's name and, if it has one, its expiry."""
    metadata = {"file-name": quote(name, safe="")}
    if expires_at:
        metadata["expires-at"] = repr(expires_at)
    return metadata


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
