"""When to try a delivery again: the schedule, jitter, the overload minimum, Retry-After.

Pure functions of the settings and the attempt log, so the policy is tested without a
network. The order matters: jitter spreads the scheduled delay first, then an overloaded
or timed-out endpoint waits at least ``delivery_overload_delay``, then the endpoint's own
Retry-After is honoured within [delay, 2 × delay]. Jitter applied last would undo both.
"""

from __future__ import annotations

import email.utils
import random
import re
from typing import Any

from app.config import Settings

OVERLOAD = (429, 502, 503, 504)
"""Answers that mean "slow down": the next attempt waits at least the overload delay."""

_SECONDS = re.compile(r"[0-9]{1,10}", re.ASCII)
_MAX_HEADER = 64


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Return the seconds from ``now`` a Retry-After value asks for, or None; never raises.

    Only ASCII digits count as seconds (``"²".isdigit()`` is True and ``float("²")`` raises);
    anything else is tried as an HTTP date, and whatever fails to parse is ignored.
    """
    if not value or len(value) > _MAX_HEADER:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
        return max(0.0, when.timestamp() - now)
    except Exception:  # noqa: BLE001 - a subscriber's malformed header must not stop retries
        return None


def next_delay(settings: Settings, attempts: list[dict[str, Any]],
               rng: random.Random | None = None) -> float | None:
    """Return seconds until the attempt after ``attempts``, or None when they are exhausted."""
    schedule = settings.delivery_schedule
    if len(attempts) >= len(schedule):
        return None
    last = attempts[-1]
    jitter = settings.delivery_jitter
    delay = float(schedule[len(attempts)]) * (rng or random).uniform(1 - jitter, 1 + jitter)
    if last.get("status_code") in OVERLOAD or last.get("error_class") == "timeout":
        delay = max(delay, settings.delivery_overload_delay)
    asked = parse_retry_after(last.get("retry_after"), last.get("at", 0.0))
    if asked is not None:
        delay = min(max(asked, delay), 2 * delay)
    return delay
