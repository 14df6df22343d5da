"""RQ's SimpleWorker with fewer round trips between jobs: the base of our warm workers.

Per job, RQ's worker loop sends its heartbeat three times (before it waits for a job, after
it took one, after it ran it), each as three separate commands, and writes its state twice.
Here a heartbeat outside a job is one pipelined round trip and is skipped when the last one
is under a second old (the worker's key lives ``worker_ttl`` + 60 s, minutes), and a state
that has not changed is not written again. What RQ writes while it prepares, runs and ends
a job (in its own pipelines, with the job's timeout) is untouched.
"""

from __future__ import annotations

import time

from redis.client import Pipeline
from rq import SimpleWorker

HEARTBEAT_EVERY = 1.0
"""Seconds between two heartbeats sent between jobs."""


class LeanWorker(SimpleWorker):
    """A SimpleWorker whose bookkeeping between jobs costs one round trip, not about ten."""

    _beat_at = float("-inf")

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat; between jobs, pipelined and at most once a second."""
        if timeout is not None or pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        if time.monotonic() - self._beat_at < HEARTBEAT_EVERY:
            return
        self._beat_at = time.monotonic()
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(None, pipe)
            pipe.execute()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's state write, skipped when the state is already that."""
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline)
