"""API-key authentication: ``Authorization: Key <key>`` (fal's form) or ``Bearer <key>``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import g, request

from app.api import services
from app.errors import AuthError
from app.store import apikeys


def presented_key() -> str:
    """Return the key in the Authorization header, or ''."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("key", "bearer"):
        return value.strip()
    return ""


def authenticate() -> apikeys.ApiKey:
    """Return the caller's key record or raise AuthError."""
    key = presented_key()
    if not key:
        raise AuthError("Missing API key: send 'Authorization: Key <your key>'")
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
