"""Delete stored files whose owner has expired; enqueued by the sweeper (``jobs/sweep.py``).

A request's input copy and outputs go when its record expires, an unused upload after the
upload TTL (``app.retention``). Batched, and safe to run twice or side by side.
"""

from __future__ import annotations

from app import retention
from app.services import current


def clean_files(now: float) -> dict[str, int]:
    """Delete the files due by ``now``; return how many were deleted and are still due."""
    return retention.clean(current(), now)
