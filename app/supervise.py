"""``python -m app.supervise NAME 'COMMAND'``: run one Procfile process, restarting it if it dies.

honcho (``make run``) stops the whole stack when any process exits and restarts nothing, so
a worker killed by the OOM killer or by hand stayed dead. Each Procfile line runs under this
small supervisor instead:

- the command runs in a process group of its own; when it exits without being asked to, the
  group is killed (a forked RQ scheduler left behind dies with it), a line says so, and the
  command starts again after a backoff that doubles from 0.5 s up to 30 s while it keeps
  failing quickly (and starts over once it has run for a minute);
- SIGTERM and SIGINT are passed on to the command's group and nothing is restarted after:
  the supervisor exits with the command's own status, so a clean stop stays a clean stop;
- the command gets SIGTERM if the supervisor itself is killed (Linux's parent-death signal),
  so nothing outlives it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0
"""Seconds a command must run before its next failure counts as the first again."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child, before exec: get ``sig`` when the parent dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)


def _say(name: str, message: str) -> None:
    print(f"supervise {name}: {message}", flush=True)


def _status(code: int) -> int:
    """A shell's exit status for a Popen return code (-N: killed by signal N)."""
    return code if code >= 0 else 128 - code


def next_delay(failures: int) -> float:
    """Return the pause before restart number ``failures`` (1, 2, ...)."""
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - 1))


def supervise(name: str, command: str) -> int:
    """Run ``command`` until asked to stop; return its last exit status."""
    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.set()
        if child and child[-1].poll() is None:
            try:
                os.killpg(child[-1].pid, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    failures = 0
    while True:
        started = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True,
                                preexec_fn=die_with_parent)
        child.append(proc)
        if stopping.is_set():  # a stop that came while it started
            forward(signal.SIGTERM, None)
        code = proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it forked and left behind
        except (ProcessLookupError, PermissionError):
            pass
        child.clear()
        if stopping.is_set():
            return _status(code)
        failures = 1 if time.monotonic() - started > HEALTHY_AFTER else failures + 1
        delay = next_delay(failures)
        _say(name, f"exited with status {_status(code)} unasked; restarting in {delay:.1f} s")
        if stopping.wait(delay):
            return _status(code)


def main(argv: list[str]) -> None:
    """Supervise NAME's COMMAND (run with /bin/sh -c)."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m app.supervise NAME 'COMMAND'")
    raise SystemExit(supervise(argv[0], argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
