"""The worker of the fast queues: warm, one process, every job in it (``rq worker -w ...``).

RQ's default worker forks a work horse per job, and the parent never imports the job code,
so every submit, settle and delivery imported ``app`` and httpx again and built a new HTTP
client (most of a delivery's time). This worker runs jobs in its own process, like RQ's
SimpleWorker: the job modules the queues name are imported once at start, and the pooled
clients in ``Services`` live as long as the worker. RQ's job timeouts still hold (they are
signal-based, in the worker's main thread); a job that crashes the process is re-run from
its lease by the sweeper, and ``app.supervise`` starts the worker again.

A first SIGTERM or SIGINT lets the current job finish (warm shutdown); a second stops at
once (cold shutdown), as RQ documents. The worker of the ``delivery`` queue keeps a sender
running across jobs (``app.sending``): a fan-out job hands its deliveries over and returns;
a warm shutdown sends what was handed over before the process ends, a cold one (a second
signal, even while a warm one drains) drops what waits in the lanes, ends once the attempts
on the wire do, and leaves the rest to the sweeper (every delivery is due in Redis until an
attempt leases it).
"""

from __future__ import annotations

import importlib
from typing import Any

from app import queues
from app.services import current
from app.store.rq_worker import LeanWorker


def preload() -> list[str]:
    """Import every job module the queues enqueue by name, and build the Services."""
    modules = sorted({path.rsplit(".", 1)[0] for path in queues.JOB_PATHS})
    for module in modules:
        importlib.import_module(module)
    current()
    return modules


class Worker(LeanWorker):
    """RQ's SimpleWorker (``app.store.rq_worker``), started with the job code loaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        preload()
        if queues.DELIVERY in self.queue_names():
            current().sender_detached = True

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop; then the deliveries handed over are sent (unless stopped cold)."""
        cold = True
        try:
            worked = super().work(*args, **kwargs)
            cold = False
            return worked
        finally:
            current().close_sender(wait=not cold)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """A second signal: drop what waits in the sender's lanes (the sweeper sends it),
        so the process ends once the attempts on the wire do, then RQ's cold stop."""
        current().close_sender(wait=False)
        super().request_force_stop(signum, frame)
