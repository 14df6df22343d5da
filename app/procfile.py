"""``python -m app.procfile start ...``: ``honcho start`` with an ordered, clean stop.

Two changes to honcho 2.0 (pinned), both for ``make run``:

- **Order.** honcho sends SIGTERM to every process at once, so Redis went first and the
  workers lost it while finishing (tracebacks). Here the processes named in ``LAST``
  (``redis``) get their SIGTERM only once all the others have exited. honcho's own limit
  still holds: 5 s after the first process exits it SIGKILLs whatever still runs.
- **Exit status.** honcho exits 130 or 143 whenever SIGINT or SIGTERM stopped it, even when
  every process then finished cleanly (``make: *** ... Error 143``). Here the status is 0
  when every process exited 0, and honcho's own otherwise.
"""

from __future__ import annotations

import sys
import threading
import time

from honcho import command
from honcho.manager import Manager

LAST = ("redis",)
"""Procfile names stopped only after every other process has exited."""


def _is_last(name: str) -> bool:
    return name.split(".")[0] in LAST  # honcho names processes "redis.1", "web.1", ...


class ServiceManager(Manager):
    """honcho's Manager that stops ``LAST`` after the rest and returns 0 on a clean stop."""

    # honcho 2.0 keeps each process's pid and, once it stopped, its return code in
    # _processes; _killall(force) signals every process that has no return code yet.

    def _killall(self, force: bool = False) -> None:
        """SIGTERM all but ``LAST`` now and ``LAST`` once the others are gone; SIGKILL all."""
        if force:
            super()._killall(force=True)
            return
        for name, process in self._processes.items():
            if not _is_last(name) and "returncode" not in process:
                self._system_print(f"sending SIGTERM to {name} (pid {process['pid']})\n")
                self._procmgr.terminate(process["pid"])
        threading.Thread(target=self._stop_last, daemon=True).start()

    def _stop_last(self) -> None:
        """Wait until every process but ``LAST`` has exited, then SIGTERM ``LAST``."""
        while any("returncode" not in p for n, p in self._processes.items() if not _is_last(n)):
            time.sleep(0.05)
        for name, process in self._processes.items():
            if _is_last(name) and "returncode" not in process:
                self._system_print(f"the others have stopped: sending SIGTERM to {name} "
                                   f"(pid {process['pid']})\n")
                self._procmgr.terminate(process["pid"])

    def loop(self) -> None:
        """Run and stop the processes as honcho does, then settle the return code."""
        super().loop()
        codes = [p.get("returncode") for p in self._processes.values()]
        if codes and all(code == 0 for code in codes):
            self.returncode = 0


def main(argv: list[str]) -> None:
    """Run honcho's command line with the manager above."""
    command.Manager = ServiceManager  # command_start builds its manager from this name
    command.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
