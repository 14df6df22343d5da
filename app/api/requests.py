"""Native requests API: submit, status, result, cancel, list."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, g, jsonify, request

from app import intake, lifecycle
from app.api import json_body, require_api_key, services
from app.errors import InvalidInputError
from app.fal_protocol import LOGS_VALUES
from app.models import Request, Status
from app.schemas import ListQuerySchema, RequestCreateSchema, compact, load
from app.store import requests as store
from app.store import tracking

bp = Blueprint("requests", __name__, url_prefix="/v1/requests")

MAX_WAIT = 60
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=([0-9]+)", re.I | re.ASCII)


def urls(request_id: str) -> dict[str, str]:
    """Return the status, response and cancel URLs of a request."""
    base = services().settings.public_base_url.rstrip("/") + "/v1/requests/" + request_id
    return {"status_url": base + "/status", "response_url": base, "cancel_url": base + "/cancel"}


def metrics(record: Request) -> dict[str, Any]:
    """Return queue and inference times (seconds) known so far, and a video's progress."""
    out: dict[str, Any] = {}
    if record.started_at:
        out["queue_time"] = round(record.started_at - record.created_at, 3)
    if record.metrics.get("inference_time") is not None:
        out["inference_time"] = record.metrics["inference_time"]
    if record.metrics.get("progress") is not None:
        out["progress"] = record.metrics["progress"]
    return out


def status_body(record: Request, with_logs: bool) -> dict[str, Any]:
    """Return the status view of a request."""
    r = services().redis
    body: dict[str, Any] = {"request_id": record.id, "status": record.status.value}
    if record.status is Status.IN_QUEUE:
        position = tracking.queue_position(r, record.id)
        body["queue_position"] = position if position is not None else 0
    body.update(urls(record.id))
    body["metrics"] = metrics(record)
    if record.error:
        body["error"] = record.error
    if with_logs:
        body["logs"] = store.logs(r, record.id)
    return body


def record_body(record: Request) -> dict[str, Any]:
    """Return the whole record of a request."""
    return {
        "request_id": record.id,
        "status": record.status.value,
        "input": record.input,
        "output": record.output,
        "error": record.error,
        "engine": record.engine or None,
        "provider": record.provider,
        "webhook_url": record.webhook_url or None,
        "created_at": store.iso(record.created_at),
        "started_at": store.iso(record.started_at) if record.started_at else None,
        "completed_at": store.iso(record.completed_at) if record.completed_at else None,
        "metrics": metrics(record),
        **urls(record.id),
    }


def prefer_wait() -> int:
    """Return the seconds asked for by ``Prefer: wait=N`` (0 when absent), at most 60."""
    match = _PREFER_WAIT.search(request.headers.get("Prefer", ""))
    if not match:
        return 0
    digits = match.group(1)
    if len(digits) > 3 or int(digits) > MAX_WAIT:
        raise InvalidInputError(f"Prefer: wait={digits[:6]} is over the limit of {MAX_WAIT} "
                                "seconds", field="Prefer")
    return int(digits)


@bp.post("")
@require_api_key
def create():
    """Submit a photo; 202 with the request's URLs (200 with the result under Prefer: wait)."""
    wait = prefer_wait()
    data = load(RequestCreateSchema(), json_body())
    record, created = intake.accept(
        services(), key_id=g.api_key.id, input=compact(data["input"]),
        webhook_url=data.get("webhook_url") or "",
        idempotency_key=_idempotency_key(), webhook_events=data.get("webhook_events"),
    )
    if wait:
        record = lifecycle.wait(services(), record.id, wait) or record
    body = record_body(record) if record.status.is_terminal else status_body(record, False)
    response = jsonify(body)
    response.status_code = 200 if record.status.is_terminal else 202
    response.headers["Location"] = urls(record.id)["status_url"]
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if key and (len(key) > 255 or not (key.isascii() and key.isprintable())):
        raise InvalidInputError("Idempotency-Key must be at most 255 printable ASCII characters",
                                field="Idempotency-Key")
    return key


@bp.get("")
@require_api_key
def list_requests():
    """List the caller's requests, newest first, with cursor pagination."""
    query = load(ListQuerySchema(), request.args.to_dict())
    found, cursor = store.list_for_key(services().redis, g.api_key.id, status=query["status"],
                                       limit=query["limit"], cursor=query["cursor"])
    return jsonify({"requests": [record_body(x) for x in found], "next_cursor": cursor})


@bp.get("/<request_id>/status")
@require_api_key
def status(request_id: str):
    """Return a request's status, queue position, metrics and (logs=1) logs."""
    record = store.get_for_key(services().redis, request_id, g.api_key.id)
    asked = request.args.get("logs", "0").lower()
    with_logs = LOGS_VALUES.get(asked) if asked else None
    if with_logs is None:
        raise InvalidInputError("logs must be 1, 0, true or false", field="logs")
    return jsonify(status_body(record, with_logs))


@bp.get("/<request_id>")
@require_api_key
def result(request_id: str):
    """Return the whole record of a request."""
    record = store.get_for_key(services().redis, request_id, g.api_key.id)
    return jsonify(record_body(record))


@bp.put("/<request_id>/cancel")
@require_api_key
def cancel(request_id: str):
    """Cancel a request: 202 while queued or running, 400 once finished."""
    record = store.get_for_key(services().redis, request_id, g.api_key.id)
    record = lifecycle.cancel(services(), record)
    response = jsonify(status_body(record, False))
    response.status_code = 202
    return response
