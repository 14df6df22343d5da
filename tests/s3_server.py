"""A real S3 protocol server for tests: moto's standalone server on a free 127.0.0.1 port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from tests.redis_server import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "posehook-test",
               "AWS_SECRET_ACCESS_KEY": "posehook-secret-never-shown",
               "AWS_DEFAULT_REGION": "us-east-1"}
"""What boto3 reads from the environment in tests (moto takes any credentials)."""


class MotoServer:
    """``python -m moto.server`` as a subprocess; ``url`` is its endpoint."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start within 60 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
