"""How deliveries go out: one signed POST per attempt, and many side by side.

:func:`post` makes one attempt on the process's pooled, SSRF-guarded client: signed
(Standard Webhooks, or fal's format), its answer read within ``delivery_timeout`` and at most
``MAX_READ`` bytes, and never raises; ``jobs.deliver`` logs and concludes it.

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

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from rq.timeouts import BaseTimeoutException

from app import outbound
from app.errors import BlockedURLError
from app.models import Delivery
from app.signing import fal as fal_signing
from app.signing import standard
from app.store import subscriptions

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger(__name__)

MAX_READ = 64 * 1024
KEEP = 20_000


def _client(services: Services) -> httpx.Client:
    """Return this process's pooled, guarded client."""
    key = services.for_settings("delivery-client", lambda settings: (
        outbound.Guard.from_settings(settings), settings.delivery_timeout,
        settings.delivery_connect_timeout))
    return services.client(("deliver", *key), lambda: outbound.client(
        key[0], timeout=key[1], connect_timeout=key[2]))


def _headers(services: Services, delivery: Delivery, secrets: list[str] | None,
             now: int) -> dict[str, str]:
    """Return the signed headers of one attempt for the delivery's kind."""
    body = delivery.body.encode()
    # identity: a compressed answer could expand far past what we mean to read.
    base = {"Content-Type": "application/json", "User-Agent": outbound.USER_AGENT,
            "Accept-Encoding": "identity"}
    if delivery.kind == "fal":
        # The header names the request as the body does (fal's id for forwarded requests).
        caller_id = json.loads(body)["request_id"]
        return {**base, **fal_signing.sign(services.signing_key, caller_id, delivery.key_id,
                                           body, now=now)}
    if secrets is None:
        secrets = [subscriptions.key_secret(services.redis, delivery.key_id)]
    signed = services.signatures.of(delivery.event_id, now, body)
    return {**base, **standard.headers(delivery.event_id, now, body, secrets, signed=signed)}


def post(services: Services, delivery: Delivery, url: str,
          secrets: list[str] | None) -> dict[str, Any]:
    """Make one attempt, answer included, within ``delivery_timeout``; never raises.

    Returns:
        The outcome to log: status_code, error_class, response, retry_after, duration_ms.
    """
    started = time.monotonic()
    deadline = started + services.settings.delivery_timeout
    result: dict[str, Any] = {"status_code": None, "error_class": None, "response": "",
                              "retry_after": None}
    try:
        headers = _headers(services, delivery, secrets, int(time.time()))
        with _client(services).stream("POST", url, content=delivery.body.encode(),
                                      headers=headers) as answer:
            result["status_code"] = answer.status_code
            result["retry_after"] = (answer.headers.get("Retry-After") or "")[:100] or None
            received = bytearray()
            # httpx times each read, not the whole answer: a trickling body stops here.
            for chunk in answer.iter_raw():
                received += chunk
                if time.monotonic() > deadline:
                    result["error_class"] = "timeout"
                    break
                if len(received) >= MAX_READ:
                    break
            result["response"] = bytes(received[:KEEP]).decode("utf-8", "replace")
            if result["error_class"] is None and not answer.is_success:
                result["error_class"] = "redirect" if answer.is_redirect else "http_status"
    except BlockedURLError:
        result["error_class"] = "ssrf_blocked"
    except httpx.TimeoutException:
        result["error_class"] = "timeout"
    except httpx.ConnectError:
        result["error_class"] = "connect"
    except httpx.HTTPError as exc:
        result["error_class"] = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a bug, or RQ's job timeout, is still an attempt
        log.exception("delivery %s: the attempt failed unexpectedly", delivery.id)
        timed_out = isinstance(exc, BaseTimeoutException)
        result.update(error_class="timeout" if timed_out else "internal_error",
                      response=type(exc).__name__)
    result["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def endpoint_of(url: str) -> str:
    """Return the endpoint a URL's requests share a cap on: its scheme, host and port."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"


class Sender:
    """Runs ``run(item)`` on a pool, at most ``per_endpoint`` at once per endpoint.

    An item is anything its ``run`` takes (a delivery id, or one read ahead); what the
    sender gives back (left over, waiting in a lane) are the items as submitted.
    """

    def __init__(self, run: Callable[[Any], object], *, threads: int, per_endpoint: int,
                 backlog: int, keep: Callable[[list[Any]], object] | None = None,
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
        try:
            while True:
                self._keep_waiting(endpoint)
                try:
                    future.set_result(self._run(item_id))
                except Exception as exc:  # noqa: BLE001 - the caller reads it, or it is logged
                    if not self.detached:
                        future.set_exception(exc)
                    else:
                        log.exception("sending %s failed; the sweeper sends it again", item_id)
                        future.set_result(None)
                with self._lock:  # one step: a submit never lines up behind a lane that left
                    lane = self._waiting.get(endpoint)
                    if lane:
                        item_id, future = lane.popleft()
                        continue
                    self._leave(endpoint)
                    return
        finally:
            self._room.release()

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
