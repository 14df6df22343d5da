"""Deliveries sent side by side: a bounded thread pool with a cap per endpoint.

One event fans out to many endpoints; sending them one after another makes every
subscriber wait for the slowest. The sender runs up to ``threads`` attempts at once, and at
most ``per_endpoint`` of them to one endpoint (scheme, host and port): the others for that
endpoint wait in its lane, in order, and run on the threads that endpoint already holds. A
slow or hanging subscriber therefore holds at most ``per_endpoint`` threads, and the rest keep
serving everyone else. Past ``backlog`` waiting in one lane, :meth:`Sender.submit` gives the
items back for the caller to hand over later.

Nothing here is durable: every item is a delivery record in Redis, due until an attempt
takes its lease, so whatever a dead process held is sent again by the sweeper.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


def endpoint_of(url: str) -> str:
    """Return the endpoint a URL's requests share a cap on: its scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


class Sender:
    """Runs ``run(item_id)`` on a pool, at most ``per_endpoint`` at once per endpoint."""

    def __init__(self, run: Callable[[str], object], *, threads: int, per_endpoint: int,
                 backlog: int) -> None:
        self._run = run
        self.per_endpoint, self.backlog = per_endpoint, backlog
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="posehook-send")
        # Taken per running lane: submit blocks while every thread is busy, so a worker
        # stops taking jobs from Redis instead of piling them up in memory.
        self._room = threading.Semaphore(threads)
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[str, Future]]] = {}
        self.detached = False
        """True in a worker that keeps the sender running between jobs (the delivery
        worker): a job then hands its items over and returns. Else a job waits for them."""

    def submit(self, items: Iterable[tuple[str, str]]) -> tuple[list[Future], list[str]]:
        """Start or line up each ``(item_id, endpoint)``.

        Returns:
            A future per item taken (its ``run`` result), and the ids of the items left
            over because their endpoint's lane was full.
        """
        futures: list[Future] = []
        over: list[str] = []
        for item_id, endpoint in items:
            future: Future = Future()
            with self._lock:
                if self._running.get(endpoint, 0) >= self.per_endpoint:
                    lane = self._waiting.setdefault(endpoint, deque())
                    if len(lane) >= self.backlog:
                        over.append(item_id)
                    else:
                        lane.append((item_id, future))
                        futures.append(future)
                    continue
                self._running[endpoint] = self._running.get(endpoint, 0) + 1
            futures.append(future)
            self._room.acquire()
            self._pool.submit(self._lane, endpoint, item_id, future)
        return futures, over

    def _lane(self, endpoint: str, item_id: str, future: Future) -> None:
        """Run an item, then the endpoint's waiting ones, on this thread."""
        try:
            while True:
                try:
                    future.set_result(self._run(item_id))
                except Exception as exc:  # noqa: BLE001 - the caller reads it, or it is logged
                    if not self.detached:
                        future.set_exception(exc)
                    else:
                        log.exception("sending %s failed; the sweeper sends it again", item_id)
                        future.set_result(None)
                with self._lock:
                    lane = self._waiting.get(endpoint)
                    if lane:
                        item_id, future = lane.popleft()
                        continue
                    self._waiting.pop(endpoint, None)
                    self._running[endpoint] -= 1
                    if not self._running[endpoint]:
                        del self._running[endpoint]
                    return
        finally:
            self._room.release()

    def in_flight(self) -> int:
        """Return how many items are running or waiting."""
        with self._lock:
            return sum(self._running.values()) + sum(len(q) for q in self._waiting.values())

    def close(self, wait: bool = True) -> None:
        """Stop taking items; with ``wait``, finish every one taken (warm shutdown)."""
        if not wait:
            with self._lock:
                self._waiting.clear()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
