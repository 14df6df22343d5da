"""Find or start a real Redis for the test session, and claim an empty database in it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from redis import Redis

from app.embedded_redis import redis_binary

LOCK = "posehook-test:claimed"


def _answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    """A redis-server process of our own on a free port, in a temporary directory."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="posehook-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.time() + 10
        while not _answers(self.url):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("embedded redis did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def base_url() -> tuple[str, EmbeddedRedis | None]:
    """Return a Redis URL to test against: REDIS_URL, else the machine's, else our own."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        return configured, None
    if _answers("redis://127.0.0.1:6379/0"):
        return "redis://127.0.0.1:6379/0", None
    embedded = EmbeddedRedis()
    return embedded.url, embedded


def claim_database(url: str) -> str:
    """Return the URL of a database 1–15 no other test session holds (flushed)."""
    root = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    for db in range(1, 16):
        candidate = f"{root}/{db}"
        client = Redis.from_url(candidate)
        if client.set(LOCK, str(os.getpid()), nx=True, ex=3 * 3600):
            client.flushdb()
            client.set(LOCK, str(os.getpid()), ex=3 * 3600)
            return candidate
    raise RuntimeError("every Redis database 1-15 is claimed by another test session")


def release_database(url: str) -> None:
    """Flush and release a claimed database."""
    Redis.from_url(url).flushdb()
