"""HTTP in: one blueprint per resource, all registered here."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request

from app.errors import NotJSONError, WrongContentTypeError
from app.services import Services


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
        return current_app.json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise NotJSONError(f"the body is not valid JSON: {exc}") from exc


def register(app: Flask) -> None:
    """Register every blueprint and the error handlers."""
    from app.api import errors, fal, files, ops, requests, subscriptions, webhooks

    for module in (ops, requests, files, webhooks, subscriptions, fal):
        app.register_blueprint(module.bp)
    errors.register(app)
