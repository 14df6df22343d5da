"""The fal provider: submit to fal's queue with our webhook URL; status, result, cancel.

One pooled httpx client per process. A submit is retried only when fal certainly did
not take it (429, 500, 503, a connection refused or timed out), so one request of ours
never becomes two at fal. When fal may have taken it but its answer was lost (a read or
write timeout, a dropped connection, 502/504 from fal's gateway), the request waits:
the webhook URL names our request (with a token only we can make), so fal's callback
settles it, and reconciliation fails it with the reason if nothing ever comes.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from app import lifecycle, queues
from app.errors import InvalidStateError, ProviderError
from app.models import Request
from app.services import Services
from app.signing.keys import url_token
from app.store import requests as store

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
GATEWAY_STATUSES = (502, 504)
"""fal's gateway answered, not fal: the request may have been taken all the same."""
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before any byte of the request left (ConnectTimeout is not a ConnectError)."""
BACKOFF = (0.5, 1.0, 2.0, 4.0)


class FalRequestUnknown(ProviderError):
    """fal answered 404 for one of its requests: it has forgotten it, or never had it."""


class FalAnswerLost(ProviderError):
    """A call may have reached fal, but its answer was lost; repeating it could do it twice."""


def fal_client(services: Services) -> httpx.Client:
    """Return this process's client for fal (our key, timeouts, no redirects)."""
    settings = services.settings
    return services.client(
        ("fal", settings.fal_key, settings.fal_timeout, settings.fal_connect_timeout),
        lambda: httpx.Client(
            timeout=httpx.Timeout(settings.fal_timeout, connect=settings.fal_connect_timeout),
            follow_redirects=False, trust_env=False,
            headers={"Authorization": f"Key {settings.fal_key}", "User-Agent": "posehook/0.1"}))


def app_url(services: Services, *parts: str) -> str:
    """Return a URL under fal's queue for our app (``.../fal-ai/dwpose/requests/...``)."""
    settings = services.settings
    return "/".join([settings.fal_queue_url.rstrip("/"), settings.fal_app, *parts])


def webhook_url(services: Services, request_id: str) -> str:
    """Return our ingress URL for fal, naming our request with a token."""
    token = url_token(services.signing_key, "fal-webhook", request_id)
    query = urlencode({"posehook_request": request_id, "token": token})
    return f"{services.settings.public_base_url.rstrip('/')}/webhooks/fal?{query}"


def fal_input(services: Services, input: dict[str, Any]) -> dict[str, Any]:
    """Return fal's input (fal-ai/dwpose's, or /video's: ``video_url`` and ``draw_mode``
    only): our own files become data URIs (fal cannot fetch from us)."""
    name = "video_url" if "video_url" in input else "image_url"
    image_url = input[name]
    key = services.storage.key_from_url(image_url)
    if key is not None:
        found = services.storage.open(key)
        if found is None:
            raise ProviderError("the uploaded input file is gone")
        body, stored = found
        with body:
            if stored.file_size > services.settings.fal_max_data_uri_bytes:
                raise ProviderError("the input is too large to send to fal as a data URI")
            image_url = (f"data:{stored.content_type};base64,"
                         + base64.b64encode(body.read()).decode())
    out = {name: image_url}
    if input.get("draw_mode"):
        out["draw_mode"] = input["draw_mode"]
    return out


def _send(services: Services, method: str, url: str, retry: bool = True, once: bool = False,
          **options: Any) -> httpx.Response:
    """Send to fal, retrying (unless told not to) only what fal certainly did not act on.

    Args:
        once: the call must not happen twice at fal (a submit): where fal may have taken
            it, raise FalAnswerLost instead of retrying, and treat 502/504 the same way.

    Raises:
        FalAnswerLost: the call may have reached fal but no answer came back.
        ProviderError: fal could not be reached (after the retries).
    """
    for attempt, pause in enumerate((*BACKOFF, None) if retry else (None,)):
        try:
            answer = fal_client(services).request(method, url, **options)
        except NEVER_SENT as exc:
            if pause is None:
                raise ProviderError(f"fal is unreachable ({type(exc).__name__})") from exc
            log.warning("fal could not be reached (%s), retry %d", type(exc).__name__,
                        attempt + 1)
            time.sleep(pause)
            continue
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            raise ProviderError(f"cannot call fal: {exc}") from exc  # nothing was sent
        except httpx.TransportError as exc:  # read/write timeout, connection dropped
            raise FalAnswerLost(f"fal's answer was lost ({type(exc).__name__})") from exc
        if once and answer.status_code in GATEWAY_STATUSES:
            raise FalAnswerLost(f"fal's gateway answered {answer.status_code}")
        if answer.status_code in RETRY_STATUSES and pause is not None:
            delay = answer.headers.get("Retry-After", "")
            time.sleep(min(float(delay), 10.0) if delay.isascii() and delay.isdigit() else pause)
            log.info("fal answered %s, retry %d", answer.status_code, attempt + 1)
            continue
        return answer
    raise ProviderError("fal kept refusing")  # pragma: no cover - loop always returns


class FalProvider:
    """Runs requests on fal-ai/dwpose; fal calls our /webhooks/fal when done."""

    name = "fal"

    def submit(self, services: Services, request: Request) -> str:
        """POST the input to fal's queue; link fal's request id to ours as soon as we have it.

        Returns "" when this or an earlier attempt may have reached fal without an answer
        (left to fal's callback, else to reconciliation).
        """
        r = services.redis
        # Recorded before sending: a crash after this point is left to reconciliation,
        # never answered by a second submission.
        if not store.mark_submitting(r, request.id, time.time()):
            log.warning("request %s was sent to fal before; not sending twice", request.id)
            return ""
        try:
            video = ("video",) if "video_url" in request.input else ()
            answer = _send(services, "POST", app_url(services, *video), once=True,
                           params={"fal_webhook": webhook_url(services, request.id)},
                           json=fal_input(services, request.input))
        except FalAnswerLost as exc:
            # fal may be running it: its callback names our request, and reconciliation
            # fails it with this reason if none ever comes. Sending again could run it twice.
            store.update(r, request.id, fal_submit_lost=exc.message)
            store.add_log(r, request.id, f"{exc.message}; waiting for fal's callback", "WARNING")
            return ""
        if answer.status_code >= 400:
            raise ProviderError(f"fal refused the request ({answer.status_code}): "
                                f"{answer.text[:300]}")
        ref = answer.json().get("request_id")
        if not ref:
            raise ProviderError("fal's answer has no request_id")
        link(services, request, ref)
        return ref

    def status(self, services: Services, ref: str) -> dict[str, Any]:
        """Return fal's status document for one of its requests."""
        answer = _send(services, "GET", app_url(services, "requests", ref, "status"),
                       params={"logs": "1"})
        if answer.status_code == 404:
            raise FalRequestUnknown(f"fal does not know request {ref} (404)")
        if answer.status_code >= 400:
            raise ProviderError(f"fal status answered {answer.status_code}")
        return answer.json()

    def result(self, services: Services, ref: str) -> tuple[int, Any]:
        """Return (HTTP status, JSON body) of fal's result for one of its requests."""
        answer = _send(services, "GET", app_url(services, "requests", ref))
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, {"detail": answer.text[:500]}

    def send_cancel(self, services: Services, request: Request, retry: bool = True) -> int:
        """Ask fal to cancel; return fal's HTTP status (202 cancelled, 400 already done)."""
        if not request.provider_ref:
            return 202
        answer = _send(services, "PUT", app_url(services, "requests", request.provider_ref,
                                                "cancel"), retry=retry)
        return answer.status_code

    def cancel(self, services: Services, request: Request) -> bool:
        """One quick try at fal (the caller is waiting); True when fal must be told later."""
        try:
            answer = self.send_cancel(services, request, retry=False)
        except ProviderError:
            answer = 0
        if answer == 400:
            raise InvalidStateError(f"fal already finished request {request.id}; "
                                    "its result arrives by callback")
        return answer not in (200, 202)

    def cancelled(self, services: Services, request: Request, pending: bool) -> None:
        """Keep telling fal when it did not take the cancel, or when its id came since.

        ``request`` is the record as the cancel found it. The submit may have linked fal's
        id after that (and before our move, so it saw nothing to cancel): then fal must be
        told too. Its late result changes nothing.
        """
        if not pending and not request.provider_ref:
            now = store.get(services.redis, request.id)
            pending = bool(now is not None and now.provider_ref)
        if pending:
            store.add_log(services.redis, request.id,
                          "fal did not take the cancel yet; retrying it", "WARNING")
            queues.enqueue_fal_cancel(services.rq, request.id)


def link(services: Services, request: Request, ref: str) -> None:
    """Keep fal's id with our request and mark it running; cancel at fal if it was cancelled.

    A cancel that came while the submit was in flight found no fal id to cancel: it is
    sent now (the API's cancel checks the other order, a link just before its move).
    """
    r = services.redis
    store.link_provider_ref(r, "fal", ref, request.id, services.settings.request_ttl)
    store.update(r, request.id, provider_ref=ref)
    if lifecycle.start(services, request, note=f"running at fal as {ref}",
                       lease_until=time.time() + services.settings.reconcile_after):
        return
    record = store.get(r, request.id)
    if record is not None and record.status.value == "CANCELLED":
        store.add_log(r, request.id, "cancelled while being submitted; telling fal", "WARNING")
        queues.enqueue_fal_cancel(services.rq, request.id)


def copy_output(services: Services, output: dict[str, Any], request: Request) -> dict[str, Any]:
    """Download fal's output image into our storage so our URLs outlive fal's CDN.

    The copy is the request's: it goes when the request record expires.
    """
    from app.images import sniff_image
    from app.outbound import Guard, fetch
    from app.retention import keep_for_request

    if isinstance(output, dict) and isinstance(output.get("video"), dict):
        return _copy_video(services, output, request)
    image = output.get("image") if isinstance(output, dict) else None
    if not isinstance(image, dict) or not image.get("url"):
        return output
    settings = services.settings
    data, _ = fetch(image["url"], Guard.from_settings(settings),
                    max_bytes=settings.max_download_bytes, timeout=settings.download_timeout,
                    max_redirects=settings.max_redirects, field="payload.image.url")
    content_type, width, height = sniff_image(data, max_pixels=settings.max_pixels,
                                              field="payload.image.url")
    stored = services.storage.put(data, content_type, image.get("file_name") or "pose.png")
    keep_for_request(services, stored, request.id, request.created_at)
    copied = {**image, "url": stored.url, "content_type": content_type,
              "file_size": stored.file_size, "width": width, "height": height}
    return {**output, "image": copied}


def _copy_video(services: Services, output: dict[str, Any], request: Request) -> dict[str, Any]:
    """Copy fal's output video (checked to be one, within the video limits) into our storage."""
    from app.outbound import Guard, fetch
    from app.retention import keep_for_request
    from app.video import CONTENT_TYPE, probe

    settings, video = services.settings, output["video"]
    field = "payload.video.url"
    data, _ = fetch(str(video.get("url") or ""), Guard.from_settings(settings),
                    max_bytes=settings.video_max_bytes, timeout=settings.download_timeout,
                    max_redirects=settings.max_redirects, field=field)
    info = probe(data, settings, field)
    stored = services.storage.put(data, CONTENT_TYPE, video.get("file_name") or "pose.mp4")
    keep_for_request(services, stored, request.id, request.created_at)
    return {**output, "video": {**video, "url": stored.url, "content_type": CONTENT_TYPE,
                                "file_size": stored.file_size, "width": info.width,
                                "height": info.height, "fps": round(float(info.fps), 6),
                                "num_frames": info.expected_frames,
                                "duration": round(info.duration, 6)}}
