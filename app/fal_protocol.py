"""fal's protocol, in one place: callback bodies, the three-status view, its URL space.

Pure functions over dicts and strings (no Flask, no Redis, no network), used by the local
provider (our inference worker calls back in fal's format), settling (reads callbacks from
fal and from us alike), the fal-compatible surface and forward mode.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from app.models import Status

APP = "fal-ai/dwpose"
VIDEO_APP = APP + "/video"
"""fal's second DWPose endpoint: a pose video from a video (``{video_url}`` → ``{video}``)."""
QUEUE_HOST = "queue.fal.run"
RUN_HOST = "fal.run"
STORAGE_HOSTS = ("rest.fal.ai", "rest.alpha.fal.ai")
NAMESPACES = ("workflows", "comfy")
"""fal's endpoint namespaces: a first path segment that comes before owner/alias."""
INPUT_ERRORS = ("invalid_input", "blocked_url", "too_large", "not_an_image", "fetch_failed",
                "input_error")
"""Error types that mean the caller's input, not the provider, failed."""
REQUEST_CALLS = {("GET", ()), ("GET", ("status",)), ("GET", ("status", "stream")),
                 ("PUT", ("cancel",))}
"""(method, path after requests/{id}) of the queue calls on one request."""


ERROR_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               412: "bad_request", 413: "file_too_large", 422: "validation_error",
               500: "internal_error", 502: "runner_connection_error",
               503: "runner_scheduling_failure", 504: "request_timeout"}
"""``X-Fal-Error-Type`` of an error answer by its status: fal's own request-error types for
the 5xx (request_timeout, internal_error, runner_*), plain names for the client errors."""
TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"
LOGS_VALUES = {"1": True, "true": True, "0": False, "false": False, "": False}
"""What ``?logs=`` may say: the JS client sends 1|0, the Python client true|false."""


class FalError(Exception):
    """An answer in fal's error shape: ``{"detail": ...}`` with an HTTP status.

    ``error_type`` goes out as ``X-Fal-Error-Type`` (by default the status's, ERROR_TYPES);
    ``user_timeout`` adds ``x-fal-request-timeout-type: user`` (the caller's own limit passed);
    ``request_id`` names the request the error is about (``x-fal-request-id``, and in the body).
    """

    def __init__(self, status: int, detail: Any, error_type: str = "",
                 user_timeout: bool = False, request_id: str = "") -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail
        self.error_type = error_type or error_type_for(status)
        self.user_timeout = user_timeout
        self.request_id = request_id


def error_type_for(status: int) -> str:
    """Return the ``X-Fal-Error-Type`` of an error answer with this status."""
    return ERROR_TYPES.get(status, "internal_error" if status >= 500 else "bad_request")


def wants_logs(value: str | None) -> bool:
    """Read ``?logs=``; raise a 422 FalError for anything but 1, 0, true, false."""
    text = (value or "").strip().lower()
    if text not in LOGS_VALUES:
        raise FalError(422, [{"loc": ["query", "logs"], "msg": "logs must be 1, 0, true or "
                                                                "false", "type": "value_error"}])
    return LOGS_VALUES[text]


NO_RETRY_VALUES = ("1", "true", "yes")
PRIORITIES = ("normal", "low")


def _header_error(name: str, message: str) -> FalError:
    return FalError(422, [{"loc": ["header", name], "msg": message, "type": "value_error"}])


def platform_fields(headers: Any, now: float) -> dict[str, Any]:
    """Return the record fields fal's request headers ask for (``headers``: case-insensitive).

    ``x-fal-request-timeout`` (seconds) gives the start deadline, ``x-fal-no-retry``
    (1|true|yes) the no-retry flag, ``x-fal-queue-priority`` (normal|low) the priority.

    Raises:
        FalError: 422 naming the header whose value is not one fal takes.
    """
    fields: dict[str, Any] = {}
    timeout = headers.get("x-fal-request-timeout")
    if timeout is not None:
        text = timeout.strip()
        try:
            seconds = float(text) if text.isascii() else math.nan
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise _header_error("x-fal-request-timeout", "must be a positive number of seconds")
        fields["start_deadline"] = now + seconds
    if (headers.get("x-fal-no-retry") or "").strip().lower() in NO_RETRY_VALUES:
        fields["no_retry"] = True
    priority = (headers.get("x-fal-queue-priority") or "normal").strip().lower()
    if priority not in PRIORITIES:
        raise _header_error("x-fal-queue-priority", "must be normal or low")
    fields["priority"] = priority
    return fields


LIFECYCLE_HEADERS = ("x-fal-object-lifecycle-preference", "x-fal-object-lifecycle")


def object_expiry(headers: Any) -> int | None:
    """Return the seconds an upload should live, from fal's object lifecycle header (JSON
    ``{"expiration_duration_seconds": n}``), or None when it says nothing of expiry.

    Raises:
        FalError: 422 naming the header when it is not such JSON.
    """
    for name in LIFECYCLE_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise _header_error(name, "must be a JSON object")
        seconds = value.get("expiration_duration_seconds")
        if seconds is None:
            return None
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise _header_error(name, "expiration_duration_seconds must be a positive integer")
        return seconds
    return None


def queue_urls(queue_base: str, request_id: str) -> dict[str, str]:
    """Return a request's response, status and cancel URLs under an app's queue base URL."""
    base = f"{queue_base.rstrip('/')}/requests/{request_id}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


def new_logs(lines: list[dict[str, Any]], sent: int) -> list[dict[str, Any]]:
    """Return the log lines after the first ``sent`` in fal's log shape (one SSE event's).

    fal's clients add each status event's ``logs`` to the lines they have, so an event
    carries only the lines the events before it did not.
    """
    return [{"message": line["message"], "level": line.get("level", "INFO"),
             "source": "user", "timestamp": line["timestamp"]} for line in lines[sent:]]


def field_detail(field: str, message: str, kind: str = "value_error") -> list[dict[str, Any]]:
    """Return FastAPI-style validation detail for one input field."""
    return [{"loc": ["body", field], "msg": message, "type": kind}]


# -- callbacks ---------------------------------------------------------------------------

def callback_body(request_id: str, output: dict[str, Any] | None = None,
                  error: dict[str, Any] | None = None) -> bytes:
    """Return a callback body in fal's webhook format: OK with the output, else ERROR.

    ``error`` is our error object (``type``, ``message``, ``field``); an input error names its
    field in ``detail[].loc`` as fal's validation errors do.
    """
    body: dict[str, Any] = {"request_id": request_id, "gateway_request_id": request_id}
    if output is not None:
        body.update(status="OK", payload=output)
    else:
        error = error or {"type": "request_error", "message": "request cancelled"}
        item: dict[str, Any] = {"msg": error["message"], "type": error["type"]}
        if error.get("field"):
            item["loc"] = ["body", error["field"].split(".")[-1]]
        body.update(status="ERROR", error=error["message"], payload={"detail": [item]})
    return json.dumps(body, separators=(",", ":")).encode()


def parse_callback(payload: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Return (output, None) for an OK callback, (None, our error object) for any other.

    An error whose detail names an input field (``loc: ["body", field]``) is the caller's
    input failing (``input_error``); anything else is the provider's (``provider_error``).
    """
    if not isinstance(payload, dict):
        payload = {}
    if payload.get("status") == "OK" and isinstance(payload.get("payload"), dict):
        return payload["payload"], None
    inner = payload.get("payload") or payload.get("payload_error")
    message = str(payload.get("error") or "the provider reported an error")
    error: dict[str, Any] = {"type": "provider_error", "message": message}
    items = inner.get("detail") if isinstance(inner, dict) else None
    for item in items if isinstance(items, list) else ():
        loc = item.get("loc") if isinstance(item, dict) else None
        if (isinstance(loc, list) and len(loc) >= 2 and loc[0] == "body"
                or isinstance(item, dict) and item.get("type") in INPUT_ERRORS):
            error["type"] = "input_error"
            error["field"] = "input." + str(loc[-1] if isinstance(loc, list) else "image_url")
            break
    if inner:
        error["detail"] = inner
    return None, error


def status_payload(code: int, body: Any) -> dict[str, Any]:
    """Return the callback a finished fal request would have sent, from its result call."""
    if code < 400 and isinstance(body, dict):
        return {"status": "OK", "payload": body}
    detail = body.get("detail") if isinstance(body, dict) else body
    return {"status": "ERROR", "error": f"fal answered {code}", "payload": {"detail": detail}}


def outcome_body(caller_id: str, status: Status, output: dict[str, Any] | None,
                 error: dict[str, Any] | None) -> str:
    """Return the fal callback a fal-protocol caller's own webhook gets for a finished record."""
    if status is Status.COMPLETED and output is not None:
        return callback_body(caller_id, output).decode()
    error = {"message": "request cancelled", **(error or {}), "type": "request_error"}
    return callback_body(caller_id, None, error).decode()


# -- the queue's views --------------------------------------------------------------------

def shown_status(status: Status) -> str:
    """Return the one of fal's three statuses a request shows: every end is COMPLETED."""
    return Status.COMPLETED.value if status.is_terminal else status.value


def is_input_error(error: dict[str, Any]) -> bool:
    """Return True when a failed request failed on the caller's input."""
    return error.get("type") in INPUT_ERRORS


# -- the URL space -------------------------------------------------------------------------

@dataclass
class Target:
    """What one ``x-fal-target-url`` names.

    ``kind`` is ``submit`` (queue), ``run`` (sync), ``upload`` (storage initiate),
    ``multipart`` (storage initiate-multipart), ``request``
    (a queue call on one request: ``call`` is the path after its id), or ``other``.
    """

    host: str
    path: str
    kind: str
    app: str = ""
    request_id: str = ""
    call: tuple[str, ...] = ()
    query: dict[str, str] = field(default_factory=dict)


def parse_target(url: str, method: str, app: str = APP) -> Target:
    """Read a fal URL against one app (``owner/alias``, maybe under a namespace).

    Queue calls on a request name only owner/alias (after a namespace), as fal's client
    builds them; submits and runs name the whole app id.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = [p for p in parts.path.split("/") if p]
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    wanted = [p for p in app.split("/") if p]
    base = wanted[:3] if wanted and wanted[0] in NAMESPACES else wanted[:2]
    target = Target(host=host, path=parts.path, kind="other", query=query)
    if method == "POST" and host in STORAGE_HOSTS and path[:2] == ["storage", "upload"] and \
            path[2:] in (["initiate"], ["initiate-multipart"]):
        target.kind = "upload" if path[2] == "initiate" else "multipart"
        return target
    target.app = "/".join(path[:len(base)])
    if method == "POST" and path == wanted and host in (QUEUE_HOST, RUN_HOST):
        target.kind = "submit" if host == QUEUE_HOST else "run"
        target.app = app
        return target
    rest = path[len(base):]
    if (host == QUEUE_HOST and path[:len(base)] == base and len(rest) >= 2
            and rest[0] == "requests" and (method, tuple(rest[2:])) in REQUEST_CALLS):
        target.kind, target.request_id, target.call = "request", rest[1], tuple(rest[2:])
    return target


def parse_app_target(url: str, method: str, app: str = APP) -> Target:
    """Read a fal URL against an app and its ``/video`` endpoint (``fal-ai/dwpose/video``):
    a submit or run of the video endpoint has ``app`` set to it; anything else is
    :func:`parse_target`'s reading against ``app``."""
    target = parse_target(url, method, app)
    if target.kind == "other":
        video = parse_target(url, method, app + "/video")
        if video.kind in ("submit", "run"):
            return video
    return target
