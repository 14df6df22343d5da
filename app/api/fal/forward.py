"""Forward mode (POSEHOOK_PROVIDER=fal): the proxy passes calls on to fal with our FAL_KEY.

The operator's key pays for what goes through, so only what a caller of our one app needs
is forwarded: submits and sync runs of FAL_APP, the storage upload initiate, and the queue
calls (status, status stream, result, cancel) on a request the caller submitted itself.
Anything else is a fal-style 404 and never reaches fal. A submit fal may have taken
without us seeing its answer is left to fal's callback (or reconciliation), as in
``app/providers/fal.py``.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from flask import Response, g, request, stream_with_context

from app import lifecycle
from app.api import json_body, services
from app.errors import InvalidStateError
from app.fal_protocol import FalError, parse_app_target
from app.models import Request, Status
from app.providers import fal as fal_provider
from app.store import requests as store

TARGET_HEADER = "x-fal-target-url"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length", "cookie",
              "authorization", TARGET_HEADER, "x-forwarded-for", "x-real-ip"}
# We decode what fal sends and pass on plain bytes: fal is asked only for the encodings httpx
# decodes (its own Accept-Encoding, not the caller's), and the answer says no encoding.
NOT_SENT = HOP_BY_HOP | {"accept-encoding"}
NOT_ANSWERED = HOP_BY_HOP | {"content-encoding", "set-cookie"}


def route(target: str, method: str, fal_app: str) -> tuple[str, str]:
    """Return what a target is: ("submit" | "run" | "upload" | "request", fal's request id).

    Raises:
        FalError: 404 for any target this posehook does not forward.
    """
    found = parse_app_target(target, method, fal_app)
    if found.kind in ("other", "multipart"):  # fal's own proxy does not pass multipart on
        raise FalError(404, f"{method} {found.host}{found.path} is not forwarded: this "
                            f"posehook passes on only {fal_app}, {fal_app}/video and fal's "
                            "storage upload")
    return found.kind, found.request_id


def owned_record(fal_id: str) -> Request:
    """Return the caller's own record of a forwarded fal request, or raise a fal-style 404."""
    r = services().redis
    ours = store.find_by_provider_ref(r, "fal", fal_id) if 0 < len(fal_id) <= 128 else None
    record = store.get(r, ours) if ours else None
    if record is None or record.key_id != g.api_key.id:
        raise FalError(404, "Request not found")
    return record


def forward(target: str) -> Response:
    """Stream an allowed call to fal with the server's FAL_KEY; record queue submits."""
    settings = services().settings
    kind, fal_id = route(target, request.method, settings.fal_app)
    owned = owned_record(fal_id) if kind == "request" else None
    cancelling = owned is not None and request.method == "PUT"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_SENT}
    headers["Authorization"] = f"Key {settings.fal_key}"
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    record = None
    if kind == "submit":
        # Recorded first, and fal is told to call us: the callback then settles the record,
        # reaches subscribers, and is passed on to the caller's own fal_webhook.
        record = _record_forwarded(query.pop("fal_webhook", ""))
        query["fal_webhook"] = fal_provider.webhook_url(services(), record.id)
    base = settings.fal_forward_base_url.rstrip("/") if settings.fal_forward_base_url else (
        f"{parts.scheme}://{parts.netloc}")
    url = base + parts.path + (f"?{urlencode(query)}" if query else "")
    client = httpx.Client(timeout=httpx.Timeout(120, connect=10), follow_redirects=False)
    try:
        upstream = client.send(client.build_request(request.method, url, headers=headers,
                                                    content=request.get_data()), stream=True)
        if record is not None or cancelling:
            upstream.read()
    except httpx.HTTPError as exc:
        client.close()
        _unanswered(record, exc)
    kept = {k: v for k, v in upstream.headers.items() if k.lower() not in NOT_ANSWERED}
    if record is not None or cancelling:
        client.close()
        if record is not None:
            _link_forwarded(record.id, upstream)
        elif upstream.status_code in (200, 202):
            _cancelled(owned.id)
        return Response(upstream.content, status=upstream.status_code, headers=kept)

    def chunks() -> Any:
        try:
            yield from upstream.iter_bytes()  # decoded, as the headers now say
        finally:
            upstream.close()
            client.close()

    return Response(stream_with_context(chunks()), status=upstream.status_code, headers=kept)


def _record_forwarded(caller_webhook: str) -> Request:
    """Make the record of a forwarded submit (provider fal), before fal sees it."""
    svc = services()
    body = json_body()
    record, _ = lifecycle.accept(svc, submit=False, key_id=g.api_key.id,
                                 input=body if isinstance(body, dict) else {}, provider="fal",
                                 fal_webhook=caller_webhook, ttl=svc.settings.request_ttl,
                                 extra={"fal_submitted_at": time.time()})
    return record


def _unanswered(record: Request | None, exc: httpx.HTTPError) -> NoReturn:
    """Answer for fal when it did not answer; a submit that may have reached it waits."""
    if isinstance(exc, fal_provider.NEVER_SENT):
        cause = f"fal is unreachable ({type(exc).__name__})"
        if record is not None:
            _fail(record.id, cause)
        raise FalError(502, cause) from exc
    cause = f"fal's answer was lost ({type(exc).__name__})"
    if record is not None:
        _wait_for_callback(record.id, cause)
    raise FalError(504, cause) from exc


def _wait_for_callback(request_id: str, cause: str) -> None:
    """Leave a submit fal may have taken to its callback, or to reconciliation with the cause."""
    r = services().redis
    store.update(r, request_id, fal_submit_lost=cause)
    store.add_log(r, request_id, f"{cause}; waiting for fal's callback", "WARNING")


def _fail(request_id: str, reason: str) -> None:
    """Fail a forwarded submit fal did not take."""
    lifecycle.fail(services(), request_id, {"type": "provider_error", "message": reason},
                   sources=(Status.IN_QUEUE,))


def _cancelled(request_id: str) -> None:
    """fal took a forwarded cancel: our record ends CANCELLED too, and says so."""
    svc = services()
    record = store.get(svc.redis, request_id)
    if record is None:
        return
    try:
        lifecycle.cancel(svc, record, ask_provider=False,
                         note="cancelled at fal through the proxy")
    except InvalidStateError:
        pass  # it had ended already: fal's answer changes nothing


def _link_forwarded(request_id: str, upstream: httpx.Response) -> None:
    """Link fal's request id to the record; fail it when fal refused, wait when unsure."""
    svc = services()
    if upstream.status_code in fal_provider.GATEWAY_STATUSES:
        _wait_for_callback(request_id, f"fal's gateway answered {upstream.status_code}")
        return
    try:
        ref = upstream.json().get("request_id") if upstream.status_code < 400 else None
    except ValueError:
        ref = None
    if not ref:
        _fail(request_id, f"fal refused the request ({upstream.status_code})")
        return
    record = store.get(svc.redis, request_id)
    if record is not None:
        fal_provider.link(svc, record, ref)
