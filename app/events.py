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

from app import queues
from app.models import Request, Status
from app.services import Services
from app.store import deliveries, subscriptions
from app.store import requests as store
from app.store.keys import key_for_request

EVENT_TYPES = subscriptions.EVENT_TYPES
TERMINAL_EVENTS = ("request.completed", "request.failed", "request.cancelled")
# The status an event announces. The record may have moved on by the time the event is
# built (a request.queued event is often emitted after the job started): the event says
# what happened, the record's later state comes with later events.
EVENT_STATUS = {"request.queued": Status.IN_QUEUE, "request.started": Status.IN_PROGRESS,
                "request.completed": Status.COMPLETED, "request.failed": Status.FAILED,
                "request.cancelled": Status.CANCELLED}


def request_data(record: Request, sequence: int, event_type: str = "") -> dict[str, Any]:
    """Return the ``data`` of a request event."""
    status = EVENT_STATUS.get(event_type, record.status)
    data: dict[str, Any] = {"request_id": record.id, "status": status.value,
                            "sequence": sequence}
    if status is Status.COMPLETED and record.output is not None:
        data["output"] = record.output
    if status in (Status.FAILED, Status.CANCELLED) and record.error is not None:
        data["error"] = record.error
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


def fal_body(record: Request) -> str:
    """Return a fal-format callback body for a finished request."""
    caller_id = fal_request_id(record)
    body: dict[str, Any] = {"request_id": caller_id, "gateway_request_id": caller_id}
    if record.output is not None:
        body.update(status="OK", payload=record.output)
    else:
        message = (record.error or {}).get("message", "request cancelled")
        body.update(status="ERROR", error=message,
                    payload={"detail": [{"msg": message, "type": "request_error"}]})
    return json.dumps(body, separators=(",", ":"))


def _delivery(event_id: str, event_type: str, kind: str, url: str, key_id: str, body: str,
              subscription_id: str = "", request_id: str = "") -> deliveries.Delivery:
    return deliveries.Delivery(id=deliveries.new_id(), event_id=event_id, event_type=event_type,
                               kind=kind, url=url, key_id=key_id, body=body,
                               created_at=time.time(), subscription_id=subscription_id,
                               request_id=request_id)


def dispatch(services: Services, found: list[deliveries.Delivery]) -> list[str]:
    """Write every delivery, then enqueue one job each; return their ids."""
    for delivery in found:
        deliveries.create(services.redis, delivery)
    for delivery in found:
        queues.enqueue_delivery(services.rq, services.settings, delivery.id,
                                f"deliver-{delivery.id}-0")
    return [d.id for d in found]


def emit(services: Services, request_id: str, event_type: str) -> list[str]:
    """Fan an event about a request out to its key's subscriptions and its own webhooks."""
    r = services.redis
    record = store.get(r, request_id)
    if record is None:
        return []
    sequence = r.hincrby(key_for_request(request_id), "event_seq", 1)
    # One id per (request, event): an event sent again after a crash has the same
    # webhook-id, so subscribers drop the repeat.
    event_id = "msg_" + hashlib.sha256(f"{request_id}:{event_type}".encode()).hexdigest()[:24]
    body = envelope(event_type, request_data(record, sequence, event_type))
    found = [_delivery(event_id, event_type, "subscription", sub.url, record.key_id, body,
                       subscription_id=sub.id, request_id=record.id)
             for sub in subscriptions.list_for_key(r, record.key_id)
             if sub.enabled and sub.wants(event_type)]
    if record.webhook_url:
        raw = r.hget(key_for_request(request_id), "webhook_events")
        wanted = json.loads(raw) if raw else None
        if subscriptions.matches(event_type, wanted or TERMINAL_EVENTS):
            found.append(_delivery(event_id, event_type, "request", record.webhook_url,
                                   record.key_id, body, request_id=record.id))
    # fal calls back only for requests it took: one it refused has no id the caller knows.
    if record.fal_webhook and event_type in TERMINAL_EVENTS and fal_request_id(record):
        found.append(_delivery(event_id, event_type, "fal", record.fal_webhook, record.key_id,
                               fal_body(record), request_id=record.id))
    ids = dispatch(services, found)
    if event_type in TERMINAL_EVENTS:
        store.event_paid(r, request_id)
    return ids


def announce_owed(services: Services, before: float) -> int:
    """Fan out the terminal events a crash left unsent (finished before ``before``)."""
    r = services.redis
    owed = store.events_owed(r, before)
    for request_id in owed:
        record = store.get(r, request_id)
        event_type = f"request.{record.status.value.lower()}" if record else ""
        if event_type in TERMINAL_EVENTS:
            emit(services, request_id, event_type)
        else:
            store.event_paid(r, request_id)  # gone, or not finished after all
    return len(owed)


def emit_to_subscription(services: Services, sub: subscriptions.Subscription, event_type: str,
                         data: dict[str, Any]) -> str:
    """Send one event to one subscription (test.ping, endpoint.disabled); return the delivery id."""
    event_id = "msg_" + secrets.token_hex(12)
    delivery = _delivery(event_id, event_type, "subscription", sub.url, sub.key_id,
                         envelope(event_type, data), subscription_id=sub.id)
    return dispatch(services, [delivery])[0]
