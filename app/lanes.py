"""Many deliveries side by side: a pool of threads, a cap and a lane per endpoint.

One event fans out to many endpoints; sending them one after another makes every
subscriber wait for the slowest. The sender runs up to ``threads`` attempts at once, and at
most ``per_endpoint`` of them to one endpoint (scheme, host and port): the others for that
endpoint wait in its lane, in order, and run on the threads that endpoint already holds. A
slow or hanging subscriber therefore holds at most ``per_endpoint`` threads, and the rest keep
serving everyone else. Past ``backlog`` waiting in one lane, :meth:`Sender.submit` gives the
items back for the caller to hand over later.

A run may return a :class:`Later`: done but for one last write, which the lane hands to its
next item's run to send with that item's first (one round trip for both). With no next item,
or one that does not take it, the lane writes it alone before going on; the item's future
gets its result only once it is written.

Nothing here is durable: every item is a delivery record in Redis, due until an attempt
takes its lease, so whatever a dead process held is sent again by the sweeper.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Later:
    """A run's result whose last write is still to be made (``write`` alone, or ``payload``
    sent by the next run with its own, which then calls :meth:`taken`)."""

    result: object
    payload: Any
    write_alone: Callable[[Any], object]
    written: bool = False
    item: Any = None
    future: Future | None = None

    def write(self) -> None:
        """Make the write now, unless it was made."""
        if not self.written:
            self.write_alone(self.payload)
            self.written = True

    def taken(self) -> None:
        """Note that the write went out with another's."""
        self.written = True


class Sender:
    """Runs ``run(item, later)`` on a pool, at most ``per_endpoint`` at once per endpoint.

    An item is anything its ``run`` takes (a delivery id, or one read ahead); what the
    sender gives back (left over, waiting in a lane) are the items as submitted. ``later``
    is the lane's previous item's :class:`Later`, or None.
    """

    def __init__(self, run: Callable[[Any, Later | None], object], *, threads: int,
                 per_endpoint: int, backlog: int, keep: Callable[[list[Any]], object] | None = None,
                 keep_every: float = 0.0) -> None:
        self._run = run
        # Items lined up in a lane are still the worker's: every ``keep_every`` seconds a
        # lane that moves on calls ``keep`` with the items still waiting in it (the deliveries
        # hold them from the sweeper again), so a deep lane never looks abandoned.
        self._keep, self._keep_every = keep, keep_every
        self._kept: dict[str, float] = {}
        self.per_endpoint, self.backlog = per_endpoint, backlog
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="posehook-send")
        # Taken per running lane: submit blocks while every thread is busy, so a worker
        # stops taking jobs from Redis instead of piling them up in memory.
        self._room = threading.Semaphore(threads)
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[Any, Future]]] = {}
        self.detached = False
        """True in a worker that keeps the sender running between jobs (the delivery
        worker): a job then hands its items over and returns. Else a job waits for them."""

    def submit(self, items: Iterable[tuple[Any, str]]) -> tuple[list[Future], list[Any]]:
        """Start or line up each ``(item, endpoint)``.

        Returns:
            A future per item taken (its ``run`` result), and the items left over because
            their endpoint's lane was full.
        """
        futures: list[Future] = []
        over: list[Any] = []
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
            taken = False
            try:
                taken = self._room.acquire()
                self._pool.submit(self._lane, endpoint, item_id, future)
            except BaseException:  # RQ's job timeout while every thread is busy: not taken
                if taken:
                    self._room.release()
                with self._lock:
                    self._leave(endpoint)
                raise
            futures.append(future)
        return futures, over

    def _lane(self, endpoint: str, item_id: Any, future: Future) -> None:
        """Run an item, then the endpoint's waiting ones, on this thread."""
        later: Later | None = None
        try:
            while True:
                self._keep_waiting(endpoint)
                outcome = self._call(item_id, later)
                if later is not None:
                    self._land(later)
                later = None
                if isinstance(outcome, Later):
                    later, outcome.item, outcome.future = outcome, item_id, future
                else:
                    self._resolve(future, item_id, outcome)
                found = self._next(endpoint, leave=later is None)
                if found is None and later is not None:  # nothing to send it with: now
                    self._land(later)
                    later = None
                    found = self._next(endpoint, leave=True)
                if found is None:
                    return
                item_id, future = found
        finally:
            if later is not None:
                self._land(later)
            self._room.release()

    def _call(self, item_id: Any, later: Later | None) -> object:
        """Return what ``run`` returns, or the exception it raised."""
        try:
            return self._run(item_id, later)
        except Exception as exc:  # noqa: BLE001 - the caller reads it, or it is logged
            return exc

    def _resolve(self, future: Future, item_id: Any, outcome: object) -> None:
        """Give ``future`` a run's outcome (a failure is logged in a detached sender)."""
        if not isinstance(outcome, Exception):
            future.set_result(outcome)
        elif not self.detached:
            future.set_exception(outcome)
        else:
            log.error("sending %s failed; the sweeper sends it again", item_id,
                      exc_info=outcome)
            future.set_result(None)

    def _land(self, later: Later) -> None:
        """Make a Later's write if the next run did not, then give its item the result."""
        try:
            later.write()
        except Exception as exc:  # noqa: BLE001 - left in progress: the sweeper's, as a crash
            self._resolve(later.future, later.item, exc)  # type: ignore[arg-type]
            return
        self._resolve(later.future, later.item, later.result)  # type: ignore[arg-type]

    def _next(self, endpoint: str, *, leave: bool) -> tuple[Any, Future] | None:
        """Take the endpoint's next waiting item; with none, leave the lane if ``leave``.

        One step under the lock: a submit never lines up behind a lane that left."""
        with self._lock:
            lane = self._waiting.get(endpoint)
            if lane:
                return lane.popleft()
            if leave:
                self._leave(endpoint)
            return None

    def _keep_waiting(self, endpoint: str) -> None:
        """Call ``keep`` with the items waiting in ``endpoint``'s lane, at most once a period."""
        if self._keep is None:
            return
        now = time.monotonic()
        with self._lock:
            lane = self._waiting.get(endpoint)
            if not lane or now - self._kept.get(endpoint, -float("inf")) < self._keep_every:
                return
            self._kept[endpoint] = now
            waiting = [item_id for item_id, _ in lane]
        try:
            self._keep(waiting)
        except Exception:  # noqa: BLE001 - Redis away: the sweeper may send them twice, no loss
            log.warning("could not hold %d waiting items of %s", len(waiting), endpoint)

    def _leave(self, endpoint: str) -> None:
        """Count one lane of ``endpoint`` less (the caller holds the lock)."""
        self._running[endpoint] -= 1
        if not self._running[endpoint]:
            del self._running[endpoint]
            if not self._waiting.get(endpoint):
                self._waiting.pop(endpoint, None)
                self._kept.pop(endpoint, None)

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
