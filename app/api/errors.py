"""Every error leaves as JSON ``{code, status, message, errors?}``; no traceback ever does."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from marshmallow import ValidationError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import RequestRedirect

from app import errors as e

log = logging.getLogger(__name__)

REDIS_RETRY_AFTER = 5
"""Seconds a caller is told to wait when Redis cannot be reached."""

def status_for(error: e.PosehookError) -> int:
    """Return the HTTP status of a posehook error (each class says its own)."""
    return error.http_status


def body(code: str, status: int, message: str, errors: dict | None = None):
    """Return a JSON error response."""
    payload = {"code": code, "status": status, "message": message}
    if errors:
        payload["errors"] = errors
    response = jsonify(payload)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Install the handlers on the app."""

    @app.errorhandler(e.PosehookError)
    def _posehook(error: e.PosehookError):
        status = status_for(error)
        errors = {error.field: [error.message]} if error.field else None
        response = body(error.code, status, error.message, errors)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Key realm="posehook"'
        if isinstance(error, e.TooManyRequestsError):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError):
        messages = error.messages if isinstance(error.messages, dict) else {"_": error.messages}
        return body("invalid_input", 422, "The request body is not valid: " + _summary(messages),
                    messages)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge):
        return body("too_large", 413, "The request body is larger than this server accepts")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        return http_error(error)

    @app.before_request
    def _redirect():
        # Flask answers routing redirects (a merged "//", a missing trailing slash) itself,
        # in HTML, without asking error handlers; answer them here, before dispatch.
        if isinstance(request.routing_exception, RequestRedirect):
            return http_error(request.routing_exception)
        return None

    @app.errorhandler(RedisError)
    def _redis_down(error: RedisError):
        # An outage is not the caller's fault nor a bug: say so, and when to try again.
        log.warning("Redis is unavailable: %s", type(error).__name__)
        response = body("unavailable", 503, "The service's database is unavailable; try again "
                        "shortly")
        response.headers["Retry-After"] = str(REDIS_RETRY_AFTER)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return body("internal_error", 500, "Internal error; it has been logged")


def http_error(error: HTTPException):
    """Return werkzeug's HTTP error (404, 405, a routing 308...) as our JSON error body.

    Its headers come along (``Allow`` on a 405, ``Location`` on a redirect), but not its
    HTML Content-Type.
    """
    status = error.code or 500
    message = error.description or error.name
    if isinstance(error, RequestRedirect):
        message = f"This resource is at {error.new_url}; send the request there"
    response = body(error.name.lower().replace(" ", "_"), status, message)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    if isinstance(error, RequestRedirect):
        response.headers["Location"] = error.new_url
    return response


def _summary(messages: dict) -> str:
    parts = []
    for field, problems in messages.items():
        text = problems if isinstance(problems, str) else (
            "; ".join(str(p) for p in problems) if isinstance(problems, list)
            else _summary(problems))
        parts.append(f"{field}: {text}")
    return ", ".join(parts)
