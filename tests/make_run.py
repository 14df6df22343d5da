"""The real ``make run`` for end-to-end tests: its own ports and data directory, its pids.

``Run(tmp_path)`` starts it in a process group of its own, printing into ``out.log``; the
honcho lines ("web.1 started (pid=N)") name each Procfile process's supervisor, and
``supervised(run, name)`` the command that supervisor runs now.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate, seconds: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    """Return once ``predicate()`` holds; fail with the log if ``proc`` ends or time is up."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def ready(url: str) -> bool:
    """True when the service's /readyz answers 200."""
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Run:
    """One ``make run`` in its own process group, printing into ``out.log``."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.redis_port, web_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{web_port}"
        self.data = tmp_path / "data"
        self.log = tmp_path / "out.log"
        environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        environ.update(POSEHOOK_DATA_DIR=str(self.data), POSEHOOK_REDIS_PORT=str(self.redis_port),
                       POSEHOOK_BIND=f"127.0.0.1:{web_port}", POSEHOOK_PUBLIC_BASE_URL=self.url,
                       POSEHOOK_ENGINE="mediapipe", POSEHOOK_WEB_WORKERS="1",
                       GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
        environ.update(env or {})
        with open(self.log, "wb") as out:
            self.make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT,
                                         env=environ, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def honcho_pid(self) -> int:
        """The process ``make`` runs (the recipe's shell execs the process manager)."""
        return children(self.make.pid)[0]

    def kill(self) -> None:
        """Leave nothing running after a failed test."""
        if self.make.poll() is None:
            os.killpg(self.make.pid, signal.SIGKILL)
        for pid in self.started_pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def started_pids(self) -> dict[str, int]:
        """Each Procfile process's supervisor, by name."""
        return {m[1]: int(m[2]) for m in re.finditer(r"(\w+)\.1 started \(pid=(\d+)\)",
                                                      self.output())}

    def dev_key(self) -> str:
        """The development API key ``make run`` made."""
        return (self.data / "dev-api-key").read_text().strip()


@contextmanager
def running(tmp_path: Path, env: dict[str, str] | None = None,
            seconds: float = 90) -> Iterator[Run]:
    """A ``make run`` whose /readyz answers 200 (its inference worker has loaded the
    engine); everything of it killed after, whatever happened."""
    started = Run(tmp_path, env)
    try:
        wait_for(lambda: ready(started.url), seconds, "/readyz answering 200", started.make,
                 started.log)
        yield started
    finally:
        started.kill()
        started.make.wait(10)


def children(pid: int) -> list[int]:
    """The pids of a process's children."""
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def supervised(run: Run, name: str) -> int:
    """The pid of the command a Procfile process's supervisor runs now."""
    return children(run.started_pids()[name])[0]
