"""How a delivery goes out: the signed POST of one attempt (``app.lanes`` runs many at once).

:func:`post` makes one attempt on the process's pooled, SSRF-guarded client: signed
(Standard Webhooks, or fal's format), its answer read within ``delivery_timeout`` and at most
``MAX_READ`` bytes, and never raises; ``jobs.deliver`` logs and concludes it.
"""

from __future__ import annotations

import json
import logging
import time
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
