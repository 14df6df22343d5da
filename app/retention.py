"""Who owns a stored file and until when; the janitor's deletion of what has expired.

A request owns its input copy and its outputs until its record expires (``created_at +
POSEHOOK_REQUEST_TTL``, when Redis drops the record); an upload no request has used yet is
kept ``POSEHOOK_UPLOAD_TTL``. ``clean`` is the janitor's pass (``jobs.janitor``): batched,
and safe to run twice or side by side (a file is deleted from storage, then forgotten).
"""

from __future__ import annotations

import logging
import time

from app.errors import InvalidInputError
from app.services import Services
from app.storage import StoredFile
from app.store import files

log = logging.getLogger(__name__)

BATCH = 500
"""Files one take deletes (S3 DeleteObjects takes 1000)."""
MAX_BATCHES = 20
"""Takes per pass; what is left waits for the next sweep (and shows in /metrics)."""
LEASE = 600
"""Seconds after which a take a crash left half done is taken again."""


def keep_upload(services: Services, stored: StoredFile, now: float | None = None) -> None:
    """Track a new upload (or data URI input) as unused: it expires after the upload TTL."""
    now = time.time() if now is None else now
    files.keep(services.redis, stored.key, "upload", stored.file_size,
               now + services.settings.upload_ttl)


def keep_for_request(services: Services, stored: StoredFile, request_id: str,
                     created_at: float) -> None:
    """Track a request's output: it goes when the request record expires."""
    files.keep(services.redis, stored.key, f"request:{request_id}", stored.file_size,
               created_at + services.settings.request_ttl)


def claim_input(services: Services, image_url: str, owner: str, created_at: float,
                field: str = "input.image_url") -> str | None:
    """Keep our own input file as long as the request that uses it; return its key.

    Returns None when ``image_url`` is not one of our files (nothing of ours to keep).

    Raises:
        InvalidInputError: the file is gone, or the janitor is deleting it right now.
    """
    storage = services.storage
    key = storage.key_from_url(image_url)
    if key is None:
        return None
    stored = storage.stat(key)
    if stored is None or not files.keep(services.redis, key, owner, stored.file_size,
                                        created_at + services.settings.request_ttl):
        raise InvalidInputError(f"{field}: the uploaded file has expired", field=field)
    return key


def drop_unused(services: Services, url: str) -> None:
    """Delete a file of ours that no request took (a data URI's copy whose request was a
    replay), from storage, then from the index (as the janitor does)."""
    key = services.storage.key_from_url(url)
    if key is not None:
        services.storage.delete([key])
        files.discard(services.redis, key)


def clean(services: Services, now: float | None = None) -> dict[str, int]:
    """Delete every stored file due by ``now``; return how many were deleted and are left."""
    now = time.time() if now is None else now
    deleted = 0
    for _ in range(MAX_BATCHES):
        keys = files.take_due(services.redis, now, BATCH, LEASE)
        if not keys:
            break
        services.storage.delete(keys)  # raises (the take is retried after LEASE) on failure
        deleted += files.forget(services.redis, keys)
    if deleted:
        log.info("janitor deleted %d expired file(s)", deleted)
    return {"deleted": deleted, "due": files.usage(services.redis, now)["due"]}


BACKFILL_OWNER = "backfill"
"""The owner of a file found in storage with no owner on record (stored before the index)."""


def backfill(services: Services, ttl: float | None = None, now: float | None = None,
             batch: int = BATCH) -> dict[str, int]:
    """Index every stored file that has no owner yet: it expires ``ttl`` from now.

    For files stored before the index existed. The default ``ttl`` is the request TTL, so no
    request record still alive can point at a file that goes first. Batched (one listing
    page and one Redis call per ``batch`` files), and safe to run again or beside the
    service: a file already indexed keeps its owner and expiry.

    Returns:
        ``{"seen": files in storage, "indexed": files this run gave an owner}``.
    """
    now = time.time() if now is None else now
    until = now + (services.settings.request_ttl if ttl is None else ttl)
    seen = indexed = 0
    pending: list[tuple[str, int]] = []
    for found in services.storage.list_files():
        pending.append(found)
        if len(pending) >= batch:
            indexed += files.adopt(services.redis, pending, BACKFILL_OWNER, until)
            seen += len(pending)
            pending = []
    indexed += files.adopt(services.redis, pending, BACKFILL_OWNER, until)
    seen += len(pending)
    log.info("retention backfill: %d stored file(s), %d newly indexed", seen, indexed)
    return {"seen": seen, "indexed": indexed}
