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

# The test images, in the repository (their sources and licences: tests/data/NOTICE.md).
DATA = ROOT / "tests" / "data"
SAMPLE = DATA / "pose_sample.jpg"  # one woman standing, 194x259
TWO_PEOPLE = DATA / "two_people.jpg"  # the sample, a white gap, the sample mirrored: 448x259
NOBODY = DATA / "nobody.jpg"  # wall and mat only, 194x259
LARGE = DATA / "large.jpg"  # the sample ten times larger, 1940x2590


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


class LiveServer:
    """A real HTTP server on 127.0.0.1 serving a WSGI app from a thread."""

    def __init__(self, wsgi_app, port: int, ssl_context=None) -> None:
        import threading

        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", port, wsgi_app, threaded=True,
                                  ssl_context=ssl_context)
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1 for the app under test."""
    return redis_server.free_port()


@pytest.fixture(scope="session")
def s3_server():
    """moto's standalone S3 server on 127.0.0.1, for the session."""
    from tests.s3_server import MotoServer

    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def storage_kind(request) -> str:
    """Where files go: "local" (default) or "s3"; parametrize with ``indirect=True``."""
    return getattr(request, "param", "local")


@pytest.fixture
def storage_overrides(storage_kind, request, monkeypatch) -> dict:
    """The storage settings of one test: the local directory, or a fresh bucket on moto."""
    if storage_kind == "local":
        return {}
    import secrets

    import boto3

    from tests.s3_server import CREDENTIALS

    server = request.getfixturevalue("s3_server")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = "posehook-" + secrets.token_hex(6)
    boto3.client("s3", endpoint_url=server.url).create_bucket(Bucket=bucket)
    return {"storage_url": f"s3://{bucket}/files", "storage_endpoint_url": server.url,
            "storage_region": "us-east-1"}


@pytest.fixture
def overrides(redis_url, tmp_path, port, storage_overrides) -> dict:
    """Settings for one test: its own Redis database, data directory and base URL.

    Loopback is allow-listed because every test server lives on 127.0.0.1.
    """
    return {**storage_overrides,
        "redis_url": redis_url,
        "data_dir": str(tmp_path / "data"),
        "public_base_url": f"http://127.0.0.1:{port}",
        "allowed_cidrs": ["127.0.0.0/8"],
        "engine": "mediapipe",
        # A port nothing listens on: fal's real JWKS is never fetched from a test.
        "fal_jwks_url": "http://127.0.0.1:9/.well-known/jwks.json",
    }


@pytest.fixture
def app(overrides, redis):
    """The Flask app; jobs run in this process share its Services."""
    from app import create_app
    from app import services as services_module

    application = create_app(overrides)
    services_module.install(application.extensions["posehook"])
    yield application
    services_module.install(None)


@pytest.fixture
def services(app):
    """The Services of the app under test (settings, Redis, storage, keys)."""
    return app.extensions["posehook"]


@pytest.fixture
def live(app, port):
    """The app served over real HTTP on 127.0.0.1 (callbacks reach it)."""
    server = LiveServer(app, port)
    yield server
    server.stop()


@pytest.fixture
def api_key(services) -> str:
    """A fresh API key."""
    from app.store import apikeys

    return apikeys.create(services.redis, "test")[1]


@pytest.fixture
def http(live, api_key):
    """An httpx client on the live app, authorised with ``api_key``."""
    import httpx

    with httpx.Client(base_url=live.url, headers={"Authorization": f"Key {api_key}"},
                      timeout=60) as client:
        yield client


@pytest.fixture
def run_jobs(services):
    """Run every queued job in this process (burst SimpleWorker) until all queues are empty."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from app import queues

    names = (*queues.FAST_QUEUES, *queues.INFERENCE_QUEUES)

    def run(max_rounds: int = 10) -> None:
        for _ in range(max_rounds):
            qs = [queues.queue(services.rq, name) for name in names]
            if not any(q.count for q in qs):
                return
            SimpleWorker(qs, connection=services.rq, serializer=JSONSerializer).work(
                burst=True, logging_level="WARNING")

    return run


@pytest.fixture
def fal():
    """The stand-in fal on 127.0.0.1 (fal's real protocol), stopped after the test."""
    from tests.fal_standin import FalStandIn

    running = FalStandIn().start()
    yield running
    running.stop()
