"""Shared fixtures: a real Redis (claimed empty database), settings, app, client, RQ workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import redis_server  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SAMPLE = DATA / "pose_sample.jpg"


@pytest.fixture(scope="session")
def redis_url():
    """URL of a Redis database that this test session owns."""
    base, embedded = redis_server.base_url()
    url = redis_server.claim_database(base)
    yield url
    redis_server.release_database(url)
    if embedded is not None:
        embedded.stop()


@pytest.fixture
def redis(redis_url):
    """A str-decoding client on the session's database, emptied before each test."""
    client = Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    client.set(redis_server.LOCK, str(os.getpid()), ex=3 * 3600)
    yield client
    client.close()


@pytest.fixture
def sample_bytes() -> bytes:
    """The public test photo of a standing woman (194x259 JPEG)."""
    return SAMPLE.read_bytes()
