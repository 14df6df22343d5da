"""What can happen to a request, and who announces it: the only caller of the transition.

Each verb is one checked move of ``models.TRANSITIONS`` (a compare-and-set in Redis), a
line in the request's log, and its event announced one way, by :func:`announce`, with the
sequence number the move took (so ``queued`` is 1, ``started`` follows it, and the end
comes last, in the order the moves happened)::

    accept ──▶ IN_QUEUE ──start──▶ IN_PROGRESS ──complete──▶ COMPLETED
                  ▲                     │        ──fail──────▶ FAILED
                  └──────requeue────────┘        ──cancel────▶ CANCELLED
    (fail and cancel also from IN_QUEUE; complete too, when a callback outruns the start)

| verb     | to          | from                  | event     | called by                    |
|----------|-------------|-----------------------|-----------|------------------------------|
| accept   | IN_QUEUE    | (new)                 | queued    | intake (API, fal), forwarding |
| start    | IN_PROGRESS | IN_QUEUE              | started   | jobs.infer, providers.fal    |
| complete | COMPLETED   | IN_QUEUE, IN_PROGRESS | completed | settle, reconcile            |
| fail     | FAILED      | IN_QUEUE, IN_PROGRESS | failed    | submit, settle, sweep, reconcile |
| cancel   | CANCELLED   | IN_QUEUE, IN_PROGRESS | cancelled | the API, the fal surface     |
| time_out | FAILED      | IN_QUEUE (late)       | failed    | jobs.infer, the fal surface  |
| requeue  | IN_QUEUE    | IN_PROGRESS           | (none)    | jobs.sweep (its worker died) |

(events are ``request.<event>``; forward mode also accepts, fails and cancels.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from app import events, fal_protocol, queues
from app.errors import InvalidStateError, PosehookError
from app.models import TRANSITIONS, Request, Status
from app.services import Services
from app.store import admission
from app.store import requests as store

log = logging.getLogger(__name__)


def announce(services: Services, request_id: str, status: Status, sequence: int) -> None:
    """Fan out the event of a move (the one way events about requests are sent)."""
    events.emit(services, request_id, status.event, sequence=sequence)


def _move(services: Services, request_id: str, to: Status, note: str, *,
          sources: Iterable[Status] | None = None, fields: Mapping[str, Any] | None = None,
          lease_until: float | None = None, level: str = "INFO", now: float | None = None,
          announced: bool = True) -> bool:
    """Make one move, log it and announce it; return True if it moved."""
    sequence = store.transition(services.redis, request_id, to,
                                TRANSITIONS[to] if sources is None else sources, fields,
                                lease_until=lease_until, announce=announced, now=now)
    if sequence is None:
        return False
    if to.is_terminal:
        admission.note_drained(services.redis)  # each request ends once: the drain rate
    store.add_log(services.redis, request_id, note, level)
    if announced:
        announce(services, request_id, to, sequence)
    return True


def accept(services: Services, *, submit: bool = True, **record: Any) -> tuple[Request, bool]:
    """Store a new IN_QUEUE request, announce it, then enqueue its submission.

    ``record`` is what ``store.requests.create`` takes. Announced before the submit job
    exists, so ``request.queued`` is always the first event. ``submit=False`` is for forward
    mode, where the proxy itself hands the request to fal.

    Returns:
        (the request, created): an Idempotency-Key seen before gives the first request.
    """
    # Its first event, request.queued, takes sequence number 1 in the same write.
    extra = {**(record.pop("extra", None) or {}), "event_seq": 1}
    request, created = store.create(services.redis, extra=extra, **record)
    if created:
        store.add_log(services.redis, request.id, "request received")
        announce(services, request.id, Status.IN_QUEUE, request.event_seq)
        if submit:
            queues.enqueue_submit(services.rq, request.id)
    return request, created


def start(services: Services, request: Request, *, lease_until: float, note: str,
          fields: Mapping[str, Any] | None = None) -> bool:
    """IN_QUEUE → IN_PROGRESS under a lease (the sweeper's to heal when it runs out)."""
    return _move(services, request.id, Status.IN_PROGRESS, note,
                 fields={"started_at": time.time(), **(fields or {})}, lease_until=lease_until)


def complete(services: Services, request_id: str, output: dict[str, Any],
             note: str = "settled: completed") -> bool:
    """→ COMPLETED with the output (from queued too: a callback can outrun the start)."""
    return _move(services, request_id, Status.COMPLETED, note,
                 fields={"output": output, "completed_at": time.time()})


def fail(services: Services, request_id: str, error: dict[str, Any], note: str = "", *,
         sources: Iterable[Status] | None = None, now: float | None = None) -> bool:
    """→ FAILED with our error object (``type``, ``message``, maybe ``field``, ``detail``)."""
    when = time.time() if now is None else now
    return _move(services, request_id, Status.FAILED, note or error["message"],
                 sources=sources, fields={"error": error, "completed_at": when},
                 level="ERROR", now=when)


def time_out(services: Services, request: Request, now: float | None = None) -> bool:
    """IN_QUEUE → FAILED (request_timeout) once its ``x-fal-request-timeout`` has passed."""
    when = time.time() if now is None else now
    if (request.status is not Status.IN_QUEUE or request.start_deadline is None
            or when < request.start_deadline):
        return False
    seconds = round(request.start_deadline - request.created_at, 3)
    return fail(services, request.id, {
        "type": "request_timeout",
        "message": f"the request did not start within its x-fal-request-timeout of {seconds} s"},
        sources=(Status.IN_QUEUE,), now=when)


def requeue(services: Services, request_id: str, note: str) -> bool:
    """IN_PROGRESS → IN_QUEUE (back in the queue set, at its old place); not announced."""
    return _move(services, request_id, Status.IN_QUEUE, note, level="WARNING",
                 announced=False)


def cancel(services: Services, request: Request, *, ask_provider: bool = True,
           note: str = "request cancelled") -> Request:
    """→ CANCELLED, telling its provider; raise InvalidStateError once it has finished.

    A queued request's job never runs; a running local one stops at its next step and stores
    nothing (``jobs.infer``). ``ask_provider=False`` when the provider itself cancelled it.
    """
    from app.providers import get_provider

    provider = get_provider(request.provider)
    pending = provider.cancel(services, request) if ask_provider else False
    if not _move(services, request.id, Status.CANCELLED, note,
                 fields={"completed_at": time.time()}):
        current = store.get(services.redis, request.id) or request
        raise InvalidStateError(
            f"Request {request.id} already finished with status {current.status.value}; "
            "only queued or running requests can be cancelled")
    if ask_provider:
        provider.cancelled(services, request, pending)
    queues.cancel_submit(services.rq, request.id)
    return store.get(services.redis, request.id) or request


def report_progress(services: Services, request_id: str) -> None:
    """Announce a running request's ``metrics.progress`` (``request.progress``; no move, so
    it takes the next sequence number). Its caller keeps it to one a second."""
    from app.models import PROGRESS_EVENT

    events.emit(services, request_id, PROGRESS_EVENT)


def is_cancelled(services: Services, request_id: str) -> bool:
    """Return True when a request was cancelled (or is gone): work on it should stop."""
    record = store.get(services.redis, request_id)
    return record is None or record.status is Status.CANCELLED


def settle(services: Services, request_id: str, payload: Any, source: str) -> str:
    """Complete or fail a request from a fal-format callback, once; return the event.

    fal's output image is copied into our storage first (our URLs outlive fal's CDN).
    """
    record = store.get(services.redis, request_id)
    if record is None or record.status.is_terminal:
        return "ignored"
    output, error = fal_protocol.parse_callback(payload)
    if output is not None:
        if source != "local":
            from app.providers.fal import copy_output

            output = copy_output(services, output, record)
        moved = complete(services, request_id, output)
    else:
        assert error is not None
        moved = fail(services, request_id, error, f"settled: failed: {error['message']}")
    if not moved:
        return "ignored"
    return (Status.COMPLETED if output is not None else Status.FAILED).event


def settle_failed(services: Services, request_id: str, exc: Exception) -> bool:
    """Count a failed try to settle a request; fail it once ``settle_tries`` are spent.

    Returns:
        True when the request was failed (stop trying), False to try again later.
    """
    tries = store.count_settle_failure(services.redis, request_id)
    message = exc.message if isinstance(exc, PosehookError) else f"{type(exc).__name__}: {exc}"
    log.warning("settling %s failed (try %d): %s", request_id, tries, message)
    store.add_log(services.redis, request_id, f"could not settle (try {tries}): {message}",
                  "WARNING")
    if tries < services.settings.settle_tries:
        return False
    reason = f"the result could not be settled after {tries} tries: {message}"
    fail(services, request_id, {"type": "settle_failed", "message": reason})
    return True


def wait(services: Services, request_id: str, seconds: float) -> Request | None:
    """Read the record until it is terminal or ``seconds`` pass; return it (None if gone)."""
    deadline = time.monotonic() + seconds
    record = store.get(services.redis, request_id)
    pause = 0.005  # short at first (most requests end within a few hundred ms), then 0.1 s
    while record is not None and not record.status.is_terminal and time.monotonic() < deadline:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(0.1, pause * 1.5)
        record = store.get(services.redis, request_id)
    return record
