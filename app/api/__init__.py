"""HTTP in: one blueprint per resource, all registered here."""

from __future__ import annotations

from flask import Flask, current_app

from app.services import Services


def services() -> Services:
    """Return the app's Services (settings, Redis, storage, keys)."""
    return current_app.extensions["posehook"]


def register(app: Flask) -> None:
    """Register every blueprint and the error handlers."""
    from app.api import errors, fal, files, ops, playground, requests, subscriptions, webhooks

    for module in (ops, requests, files, webhooks, subscriptions, fal, playground):
        app.register_blueprint(module.bp)
    errors.register(app)
