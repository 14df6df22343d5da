"""The whole service as real processes: gunicorn, the RQ worker, the inference worker.

Used by end-to-end tests: ``with Stack(redis_url, tmp_path) as stack: stack.url ...``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Stack:
    """Start web + workers as subprocesses against one Redis database; stop them on exit."""

    def __init__(self, redis_url: str, workdir: Path, env: dict[str, str] | None = None,
                 inference: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "POSEHOOK_PUBLIC_BASE_URL": self.url,
            "POSEHOOK_DATA_DIR": str(self.workdir / "data"),
            "POSEHOOK_ALLOWED_CIDRS": "127.0.0.0/8",
            "POSEHOOK_ENGINE": "mediapipe",
            "POSEHOOK_FAL_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
            "PYTHONPATH": str(ROOT),
            "GLOG_minloglevel": "2",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(env or {}),
        }
        self.redis_url = redis_url
        self.inference = inference
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_web(self) -> None:
        """Start gunicorn on the stack's port and wait until it answers."""
        self._start("web", [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                            "--workers", "2", "--threads", "4", "--timeout", "90",
                            "--keep-alive", "10", "wsgi:app"])
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.time() > deadline or self.procs["web"].poll() is not None:
                raise RuntimeError("web did not start:\n" + self.log("web"))
            time.sleep(0.1)

    def start_worker(self) -> None:
        """Start one RQ worker, the Procfile's kind, for every fast queue (with its scheduler)."""
        from app import queues

        self._start("worker", [str(BIN / "rq"), "worker", "-w", "jobs.fast_worker.Worker",
                               "--serializer", "json",
                               "--with-scheduler", "--maintenance-interval",
                               str(queues.MAINTENANCE_INTERVAL), "--url", self.redis_url,
                               *queues.FAST_QUEUES])

    def start_inference(self, name: str = "inference") -> subprocess.Popen:
        """Start an inference worker (engine preloaded); more than one needs distinct names."""
        return self._start(name, [sys.executable, "-m", "jobs.worker"])

    def __enter__(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_web()
            self.start_worker()
            if self.inference:
                self.start_inference()
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process group (SIGKILL: a crash)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(10)

    def log(self, name: str) -> str:
        """Return what one process printed."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every process (TERM, then KILL)."""
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()

    def __exit__(self, *exc: object) -> None:
        self.stop()
