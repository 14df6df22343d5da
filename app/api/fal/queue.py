"""fal's queue protocol for ``fal-ai/dwpose``, served from our own records and engine.

Statuses are fal's three: FAILED and CANCELLED show as COMPLETED, and the error comes
with the result. Errors are fal-shaped ``{"detail": ...}`` so the client raises its own
ApiError / ValidationError.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Response, g, jsonify, request, stream_with_context

from app import intake, lifecycle
from app.api import services
from app.errors import InvalidStateError, PosehookError, TooManyRequestsError
from app.fal_protocol import (
    APP,
    TIMEOUT_TYPE_HEADER,
    FalError,
    error_type_for,
    field_detail,
    is_input_error,
    new_logs,
    platform_fields,
    queue_urls,
    shown_status,
)
from app.models import Request, Status
from app.schemas import FalInputSchema, FalVideoInputSchema, compact, load
from app.store import requests as store
from app.store import tracking

QUEUE_BASE = "https://queue.fal.run/" + APP
STREAM_SECONDS = 600


def fal_error_response(error: FalError) -> Response:
    """Return ``{"detail": ...}`` with its status and ``X-Fal-Error-Type``, as fal answers."""
    response = jsonify({"detail": error.detail} if not error.request_id else {
        "detail": error.detail, "error_type": error.error_type, "request_id": error.request_id})
    response.status_code = error.status
    response.headers["X-Fal-Error-Type"] = error.error_type
    if error.user_timeout:
        response.headers[TIMEOUT_TYPE_HEADER] = "user"
    if error.request_id:
        response.headers["x-fal-request-id"] = error.request_id
    return response


def urls(request_id: str) -> dict[str, str]:
    """Return a request's URLs on the queue host the caller called.

    Through the proxy that is fal's own (the JS client sends it back through the proxy);
    on the fal-hosts listener it is the listener, which the Python client follows.
    """
    return queue_urls(g.get("fal_queue_base", QUEUE_BASE), request_id)


def own(request_id: str) -> Request:
    """Return the caller's request or a fal-style 404 (failed first if its timeout passed)."""
    try:
        record = store.get_for_key(services().redis, request_id, g.api_key.id)
    except PosehookError as exc:
        raise FalError(404, "Request not found") from exc
    if lifecycle.time_out(services(), record):
        record = store.get(services().redis, request_id) or record
    return record


def submit(body: Any, fal_webhook: str, video: bool = False) -> Request:
    """Validate fal's input (``video``: fal-ai/dwpose/video's) and headers and make an
    ordinary request record."""
    data = compact(load(FalVideoInputSchema() if video else FalInputSchema(), body))
    fields = platform_fields(request.headers, time.time())
    try:
        record, _ = intake.accept(services(), key_id=g.api_key.id, input=data,
                                  fal_webhook=fal_webhook, extra=fields)
    except TooManyRequestsError:
        raise  # the blueprint answers it: 429 with Retry-After
    except PosehookError as exc:
        field = (exc.field or ("video_url" if video else "image_url")).split(".")[-1]
        raise FalError(413 if exc.code == "too_large" else 422,
                       field_detail(field, exc.message)) from exc
    return record


def submit_answer(record: Request) -> Response:
    """Answer a queue submit as fal does."""
    position = tracking.queue_position(services().redis, record.id)
    return jsonify({"request_id": record.id, "status": "IN_QUEUE",
                    "queue_position": position or 0, **urls(record.id)})


def status_body(record: Request, with_logs: bool, logs_sent: int = 0) -> dict[str, Any]:
    """Return fal's status document for a request.

    ``logs`` is always there, as on fal (the Python client reads it): null unless asked,
    else the lines after the first ``logs_sent`` (0 for a status call: all of them).
    """
    r = services().redis
    body: dict[str, Any] = {"status": shown_status(record.status), "request_id": record.id,
                            **urls(record.id), "logs": None, "metrics": {}}
    if record.status is Status.IN_QUEUE:
        body["queue_position"] = tracking.queue_position(r, record.id) or 0
    body["metrics"] = {k: record.metrics[k] for k in ("inference_time", "progress")
                       if record.metrics.get(k) is not None}
    if with_logs:
        body["logs"] = new_logs(store.logs(r, record.id), logs_sent)
    return body


def status(request_id: str, with_logs: bool) -> Response:
    """GET .../requests/{id}/status."""
    return jsonify(status_body(own(request_id), with_logs))


def stream(request_id: str, with_logs: bool) -> Response:
    """GET .../requests/{id}/status/stream: one SSE event per change, closed when done.

    Each event carries only the log lines no event before it carried: fal's clients add
    every event's ``logs`` to the lines they have.
    """
    record = own(request_id)

    def events() -> Any:
        last = None
        sent = 0
        deadline = time.monotonic() + STREAM_SECONDS
        current = record
        while time.monotonic() < deadline:
            body = status_body(current, with_logs, sent)
            sent += len(body["logs"] or ())
            text = json.dumps({**body, "logs": None})
            if text != last or body["logs"]:
                last = text
                yield f"data: {json.dumps(body)}\n\n"
            if body["status"] == "COMPLETED":
                return
            time.sleep(0.2)
            current = store.get(services().redis, request_id) or current
            if lifecycle.time_out(services(), current):  # its x-fal-request-timeout passed
                current = store.get(services().redis, request_id) or current

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def result_response(record: Request) -> Response:
    """The result as fal answers it: the output with x-fal-request-id, or a fal error."""
    if not record.status.is_terminal:
        raise FalError(400, "Request is still in progress")
    if record.status is Status.CANCELLED:
        raise FalError(400, "Request was cancelled")
    if record.status is Status.FAILED:
        error = record.error or {}
        if error.get("type") == "request_timeout":
            raise FalError(504, error["message"], "request_timeout", user_timeout=True)
        if is_input_error(error) or "image" in error.get("message", ""):
            field = (error.get("field") or "image_url").split(".")[-1]
            raise FalError(422, field_detail(field, error.get("message", "invalid input")))
        raise FalError(500, error.get("message", "Internal error"))
    response = jsonify(record.output)
    response.headers["x-fal-request-id"] = record.id
    return response


def result(request_id: str) -> Response:
    """GET .../requests/{id}."""
    return result_response(own(request_id))


def cancel(request_id: str) -> Response:
    """PUT .../requests/{id}/cancel: 202 while queued or running, 400 once done."""
    record = own(request_id)
    try:
        lifecycle.cancel(services(), record)
    except InvalidStateError:
        response = jsonify({"status": "ALREADY_COMPLETED"})
        response.status_code = 400
        response.headers["X-Fal-Error-Type"] = error_type_for(400)
        return response
    response = jsonify({"status": "CANCELLATION_REQUESTED"})
    response.status_code = 202
    return response


def run(body: Any, wait: float, video: bool = False) -> Response:
    """POST fal.run/fal-ai/dwpose (``video``: /video): submit, answer with the result.

    With ``x-fal-request-timeout`` a request not started by then fails with a 504 that says
    the caller's own limit passed; once started it has the rest of ``wait``. One not done
    in ``wait`` is cancelled and answered 504 with its id: as on fal, a sync run's result
    goes only to its connection, so nobody could collect it (and fal's JS client sends a
    504 again, which would start it again beside itself).
    """
    svc = services()
    record = submit(body, "", video)
    until = time.monotonic() + wait
    first = wait if record.start_deadline is None else min(
        wait, max(0.0, record.start_deadline - time.time()))
    done = lifecycle.wait(svc, record.id, first) or record
    if not done.status.is_terminal and lifecycle.time_out(svc, done):
        done = store.get(svc.redis, record.id) or done
    elif not done.status.is_terminal:
        done = lifecycle.wait(svc, record.id, max(0.0, until - time.monotonic())) or done
    if not done.status.is_terminal:
        try:
            lifecycle.cancel(svc, done, note=f"request cancelled: the sync run gave up after "
                                             f"{wait:g} s (504)")
        except InvalidStateError:  # it finished just now
            done = store.get(svc.redis, record.id) or done
        else:
            raise FalError(504, f"The request did not finish within {wait:g} s, so it was "
                                "cancelled; submit long requests to the queue (fal.subscribe, "
                                "queue.fal.run) instead", request_id=record.id)
    return result_response(done)
