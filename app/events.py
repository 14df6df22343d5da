"""Events about requests and their fan-out: one delivery record per (event, endpoint).

Delivery records are written before any job is enqueued, so a crash between the two
leaves a due delivery that the sweeper sends; nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from app import fal_protocol, queues
from app.models import (
    PROGRESS_EVENT,
    STATUS_OF,
    TERMINAL_EVENTS,
    Delivery,
    Request,
    Status,
    Subscription,
    matches,
)
from app.sending import endpoint_of
from app.services import Services
from app.store import deliveries, subscriptions, tracking
from app.store import requests as store


def request_data(record: Request, sequence: int, event_type: str = "") -> dict[str, Any]:
    """Return the ``data`` of a request event.

    The record may have moved on by the time the event is built (a fast job can overtake
    the fan-out): the event says what happened, the record's later state comes with later
    events.
    """
    status = STATUS_OF.get(event_type, record.status)
    data: dict[str, Any] = {"request_id": record.id, "status": status.value,
                            "sequence": sequence}
    if status is Status.COMPLETED and record.output is not None:
        data["output"] = record.output
    if status in (Status.FAILED, Status.CANCELLED) and record.error is not None:
        data["error"] = record.error
    if event_type == PROGRESS_EVENT:
        data["progress"] = record.metrics.get("progress")
    return data


def envelope(event_type: str, data: dict[str, Any]) -> str:
    """Return the exact JSON body sent: {type, timestamp, data}."""
    return json.dumps({"type": event_type, "timestamp": store.iso(time.time()), "data": data},
                      separators=(",", ":"))


def fal_request_id(record: Request) -> str:
    """Return the request id a caller of fal's protocol was given for a record.

    Records with a ``fal_webhook`` come from the fal proxy: served here (provider local),
    the caller got our id; forwarded to fal (provider fal), it got fal's, and has none
    when fal refused the submit.
    """
    return record.provider_ref if record.provider == "fal" else record.id


def _delivery(event_id: str, event_type: str, kind: str, url: str, key_id: str, body: str,
              subscription_id: str = "", request_id: str = "") -> Delivery:
    return Delivery(id=deliveries.new_id(), event_id=event_id, event_type=event_type,
                               kind=kind, url=url, key_id=key_id, body=body,
                               created_at=time.time(), subscription_id=subscription_id,
                               request_id=request_id)


def dispatch(services: Services, found: list[Delivery]) -> list[str]:
    """Write every delivery, then enqueue one job that sends them side by side; return ids."""
    if not found:
        return []
    deliveries.create(services.redis, *found)
    queues.enqueue_deliveries(services.rq, services.settings,
                              [(d.id, endpoint_of(d.url)) for d in found])
    return [d.id for d in found]


def emit(services: Services, request_id: str, event_type: str,
         sequence: int | None = None) -> list[str]:
    """Fan an event about a request out to its key's subscriptions and its own webhooks.

    ``sequence`` is the number the move that made the event took (``app.lifecycle``);
    without one, the event takes the next number.
    """
    r = services.redis
    record = store.get(r, request_id)
    if record is None:
        return []
    if event_type == PROGRESS_EVENT and record.status is not Status.IN_PROGRESS:
        return []  # progress of a request that has ended would follow its last event
    if sequence is None:
        sequence = store.next_event_seq(r, request_id)
    # One id per (request, event): an event sent again after a crash has the same
    # webhook-id, so subscribers drop the repeat.
    # A request has many progress events: each is its own (by its sequence number).
    name = f"{request_id}:{event_type}" + (f":{sequence}" if event_type == PROGRESS_EVENT else "")
    event_id = "msg_" + hashlib.sha256(name.encode()).hexdigest()[:24]
    body = envelope(event_type, request_data(record, sequence, event_type))
    found = [_delivery(event_id, event_type, "subscription", sub.url, record.key_id, body,
                       subscription_id=sub.id, request_id=record.id)
             for sub in subscriptions.list_for_key(r, record.key_id)
             if sub.enabled and sub.wants(event_type)]
    if record.webhook_url:
        if matches(event_type, record.webhook_events or TERMINAL_EVENTS):
            found.append(_delivery(event_id, event_type, "request", record.webhook_url,
                                   record.key_id, body, request_id=record.id))
    # fal calls back only for requests it took: one it refused has no id the caller knows.
    if record.fal_webhook and event_type in TERMINAL_EVENTS and fal_request_id(record):
        found.append(_delivery(event_id, event_type, "fal", record.fal_webhook, record.key_id,
                               fal_protocol.outcome_body(fal_request_id(record), record.status,
                                                         record.output, record.error),
                               request_id=record.id))
    ids = dispatch(services, found)
    if event_type in TERMINAL_EVENTS:
        tracking.event_paid(r, request_id)
    return ids


def announce_owed(services: Services, before: float) -> int:
    """Fan out the terminal events a crash left unsent (finished before ``before``)."""
    r = services.redis
    owed = tracking.events_owed(r, before)
    for request_id in owed:
        record = store.get(r, request_id)
        if record is not None and record.status.is_terminal:
            # The terminal move took the last sequence number: the event keeps it.
            emit(services, request_id, record.status.event, sequence=record.event_seq)
        else:
            tracking.event_paid(r, request_id)  # gone, or not finished after all
    return len(owed)


def emit_to_subscription(services: Services, sub: Subscription, event_type: str,
                         data: dict[str, Any]) -> str:
    """Send one event to one subscription (test.ping, endpoint.disabled); return the delivery id."""
    event_id = "msg_" + secrets.token_hex(12)
    delivery = _delivery(event_id, event_type, "subscription", sub.url, sub.key_id,
                         envelope(event_type, data), subscription_id=sub.id)
    return dispatch(services, [delivery])[0]
