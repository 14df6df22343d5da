"""HTTP in: one blueprint per resource, all registered here, and what they share.

Blueprint modules import nothing of each other: what two of them need (the Services, API-key
authentication) lives here, and domain logic lives outside ``app/api`` (``app.lifecycle``).

Authentication is ``Authorization: Key <key>`` (fal's form) or ``Bearer <key>``. The fal
proxy also takes short-lived proxy tokens (``pht_<key id>.<expiry>.<mac>``), which a backend
makes for its browser code, so the page never holds the API key itself: the "session" of
fal's server-side proxy pattern, without cookies.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, g, request

from app.errors import AuthError, InvalidInputError, NotJSONError, WrongContentTypeError
from app.services import Services
from app.signing.keys import check_url_token, url_token
from app.store import apikeys

OPENAPI = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "openapi.yaml")
"""The contract, served by ops and rendered by the docs page."""


def services() -> Services:
    """Return the app's Services (settings, Redis, storage, keys)."""
    return current_app.extensions["posehook"]


def json_body(optional: bool = False) -> Any:
    """Return the request's JSON body, parsed; ``optional``: an empty body is None.

    Raises:
        WrongContentTypeError: a body without ``Content-Type: application/json``.
        NotJSONError: a body that does not parse, with the parser's position message.
    """
    data = request.get_data()
    if optional and not data:
        return None
    if not request.is_json:
        raise WrongContentTypeError("send the body with Content-Type: application/json")
    try:
        body = current_app.json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise NotJSONError(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInputError(TOO_DEEP, field="body") from exc
    if _too_deep(body):
        raise InvalidInputError(TOO_DEEP, field="body")
    return body


MAX_JSON_DEPTH = 32
"""How deep a JSON body may nest: ours nest 3 levels; a deeper one only costs us work."""
TOO_DEEP = f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"


def _too_deep(body: Any) -> bool:
    """Return True when ``body`` nests past MAX_JSON_DEPTH (checked without recursion)."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return True
            stack.extend((x, depth + 1) for x in (value.values() if isinstance(value, dict)
                                                  else value))
    return False


def register(app: Flask) -> None:
    """Register every blueprint and the error handlers."""
    from app.api import errors, fal, files, ops, playground, requests, subscriptions, webhooks

    for module in (ops, requests, files, webhooks, subscriptions, fal, playground):
        app.register_blueprint(module.bp)
    errors.register(app)


def register_fal_hosts(app: Flask) -> None:
    """Register only fal's own hosts (the fal-hosts listener's app) and the error handlers."""
    from app.api import errors
    from app.api.fal import hosts

    app.register_blueprint(hosts.bp)
    errors.register(app)


PROXY_TOKEN_PREFIX = "pht_"


def presented_key() -> str:
    """Return the key in the Authorization header, or ''."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("key", "bearer"):
        return value.strip()
    return ""


def proxy_token(key_id: str, expires_at: int) -> str:
    """Return a proxy token for an API key, good until ``expires_at`` (epoch seconds)."""
    value = f"{key_id}.{expires_at}"
    return f"{PROXY_TOKEN_PREFIX}{value}.{url_token(services().signing_key, 'proxy', value)}"


def _from_proxy_token(token: str) -> apikeys.ApiKey:
    """Return the key a proxy token stands for, or raise AuthError (expired, forged, revoked)."""
    key_id, _, rest = token[len(PROXY_TOKEN_PREFIX):].partition(".")
    expires, _, mac = rest.partition(".")
    value = f"{key_id}.{expires}"
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or \
            not check_url_token(services().signing_key, "proxy", value, mac):
        raise AuthError("Invalid proxy token")
    if int(expires) < time.time():
        raise AuthError("Proxy token expired: ask your backend for a new one")
    record = apikeys.get_live(services().redis, key_id)
    if record is None:
        raise AuthError("Invalid or revoked API key")
    return record


def authenticate(proxy_tokens: bool = False) -> apikeys.ApiKey:
    """Return the caller's key record or raise AuthError."""
    key = presented_key()
    if not key:
        raise AuthError("Missing API key: send 'Authorization: Key <your key>'")
    if proxy_tokens and key.startswith(PROXY_TOKEN_PREFIX):
        return _from_proxy_token(key)
    record = apikeys.authenticate(services().redis, key)
    if record is None:
        raise AuthError("Invalid or revoked API key")
    return record


def require_api_key(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run the view only for a valid key; the record is ``g.api_key``."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.api_key = authenticate()
        return view(*args, **kwargs)

    return wrapped
