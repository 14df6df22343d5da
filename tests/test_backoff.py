"""The retry policy: jitter, then the overload minimum, then Retry-After; parsing never raises."""

from __future__ import annotations

import time

import pytest

from app.backoff import parse_retry_after


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
