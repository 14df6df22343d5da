"""The retry policy: jitter, then the overload minimum, then Retry-After; parsing never raises."""

from __future__ import annotations

import random
import time

import pytest

from app.backoff import next_delay, parse_retry_after
from app.config import load_settings

SETTINGS = load_settings({"delivery_jitter": 0.2, "delivery_overload_delay": 60}, environ={})


def _after(count: int, status_code: int | None = 500, error_class: str | None = "http_status",
           retry_after: str | None = None) -> list[dict]:
    """An attempt log of ``count`` failures, the last answering as given."""
    last = {"at": time.time(), "status_code": status_code, "error_class": error_class,
            "retry_after": retry_after}
    return [dict(last) for _ in range(count)]


def _delays(attempts: list[dict], runs: int = 300) -> list[float]:
    rng = random.Random(5)
    return [next_delay(SETTINGS, attempts, rng) for _ in range(runs)]


@pytest.mark.parametrize("value", [
    "²", "١٢", "1²", "  ²  ", "9" * 11, "1" * 5000, "-5", "1.5", "Mon, 99 Foo 2024 99:99:99 GMT",
    "Fri, 31 Dec 99999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:00 +9999", "\x00", "", None,
])
def test_retry_after_that_is_not_seconds_or_a_date_is_ignored(value):
    assert parse_retry_after(value, time.time()) is None


def test_retry_after_seconds_and_dates():
    now = time.time()
    assert parse_retry_after(" 120 ", now) == 120.0
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 600))
    assert 598 <= parse_retry_after(date, now) <= 601
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now) == 0.0


def test_a_429_on_the_first_retry_never_waits_less_than_the_overload_minimum():
    # Scheduled 5 s ± 20 % → at least 60 s; jitter after the floor allowed 48 s.
    delays = _delays(_after(1, 429))
    assert min(delays) >= 60 and max(delays) <= 60


def test_a_timeout_waits_the_overload_minimum_too():
    assert min(_delays(_after(1, None, "timeout"))) >= 60


def test_retry_after_within_twice_the_delay_is_honoured_exactly():
    # Scheduled 1800 s ± 20 %; the endpoint asks for 2000 s: never sooner than asked.
    delays = _delays(_after(3, 503, retry_after="2000"))
    assert min(delays) >= 2000 and max(delays) <= 1800 * 1.2


def test_retry_after_is_clamped_to_twice_the_jittered_delay():
    delays = _delays(_after(3, 503, retry_after="100000"))
    assert min(delays) >= 2 * 1800 * 0.8 and max(delays) <= 2 * 1800 * 1.2


def test_a_short_retry_after_does_not_shorten_the_schedule():
    delays = _delays(_after(3, 503, retry_after="1"))
    assert min(delays) >= 1800 * 0.8 and len(set(delays)) > 1  # jitter still spreads them


def test_exhausted_after_the_schedule():
    assert next_delay(SETTINGS, _after(len(SETTINGS.delivery_schedule))) is None
