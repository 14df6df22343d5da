"""The worker of the fast queues: RQ's forking worker, with a work horse that outlives SIGTERM.

``rq worker -w jobs.fast_worker.Worker ...`` (the Procfile). honcho stops a process by
signalling its whole process group, so the work horse gets the SIGTERM meant for the worker
and, under RQ's default, dies in the middle of its job. Here the horse ignores SIGTERM as it
already ignores SIGINT, and the worker decides: a first signal lets the job finish (warm
shutdown), a second kills the horse (cold shutdown, by SIGKILL), as RQ documents.
"""

from __future__ import annotations

import signal

import rq


class Worker(rq.Worker):
    """RQ's Worker whose work horse leaves SIGTERM, like SIGINT, to the worker."""

    def setup_work_horse_signals(self) -> None:
        """Ignore SIGINT and SIGTERM in the horse; the worker stops it when it must."""
        super().setup_work_horse_signals()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
