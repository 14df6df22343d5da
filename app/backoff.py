"""When to try a delivery again: the schedule, jitter, the overload minimum, Retry-After.

Pure functions of the settings and the attempt log, so the policy is tested without a
network.
"""

from __future__ import annotations

import email.utils
import random
from typing import Any

from app.config import Settings

OVERLOAD = (429, 502, 503, 504)
"""Answers that mean "slow down": the next attempt waits at least the overload delay."""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Parse Retry-After (seconds or an HTTP date) into seconds from now."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def next_delay(settings: Settings, attempts: list[dict[str, Any]],
               rng: random.Random | None = None) -> float | None:
    """Return seconds until the attempt after ``attempts``, or None when they are exhausted."""
    schedule = settings.delivery_schedule
    if len(attempts) >= len(schedule):
        return None
    last = attempts[-1]
    delay = float(schedule[len(attempts)])
    if last["status_code"] in OVERLOAD or last["error_class"] == "timeout":
        delay = max(delay, settings.delivery_overload_delay)
    asked = parse_retry_after(last.get("retry_after"), last["at"])
    if asked is not None:
        delay = min(max(asked, delay), 2 * delay)
    jitter = settings.delivery_jitter
    return delay * (rng or random).uniform(1 - jitter, 1 + jitter)
