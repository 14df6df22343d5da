"""Subscriptions, their deliveries and replays, and the per-key webhook secret."""

from __future__ import annotations

import re
import time

from flask import Blueprint, g, jsonify, request

from app import events, queues
from app.api import json_body, proxy_token, require_api_key, services
from app.errors import ConflictError, InvalidInputError, NotFoundError
from app.models import Delivery
from app.outbound import Guard
from app.schemas import (
    ProxyTokenSchema,
    RecoverSchema,
    SubscriptionCreateSchema,
    SubscriptionUpdateSchema,
    load,
)
from app.store import deliveries, subscriptions
from app.store.requests import iso

bp = Blueprint("subscriptions", __name__, url_prefix="/v1")

RECOVER_WINDOW = 14 * 86400
RECOVER_MAX = 100
"""Failed deliveries one recover call sends again."""
RECOVER_SCAN = 1000
"""Deliveries one recover call looks at (records are read a page at a time)."""


def _check_url(url: str) -> None:
    Guard.from_settings(services().settings).check_url(url, "url")


def _with_secret(sub: subscriptions.Subscription) -> dict:
    return {**sub.public(), "secret": sub.secrets[0]["secret"]}


def _found(sub: subscriptions.Subscription | None,
           subscription_id: str) -> subscriptions.Subscription:
    """Return the changed subscription; a DELETE that won the race is a 404."""
    if sub is None:
        raise NotFoundError(f"No subscription {subscription_id!r}")
    return sub


@bp.post("/subscriptions")
@require_api_key
def create():
    """Register a callback URL; the answer shows its secret (this once)."""
    data = load(SubscriptionCreateSchema(), json_body())
    _check_url(data["url"])
    sub = subscriptions.create(services().redis, g.api_key.id, data["url"], data["events"],
                               data["description"])
    response = jsonify(_with_secret(sub))
    response.status_code = 201
    return response


@bp.get("/subscriptions")
@require_api_key
def list_subscriptions():
    """List the caller's subscriptions."""
    found = subscriptions.list_for_key(services().redis, g.api_key.id)
    return jsonify({"subscriptions": [s.public() for s in found]})


@bp.get("/subscriptions/<subscription_id>")
@require_api_key
def get_subscription(subscription_id: str):
    """Show one subscription (without its secret)."""
    return jsonify(subscriptions.get_for_key(services().redis, subscription_id,
                                             g.api_key.id).public())


@bp.patch("/subscriptions/<subscription_id>")
@require_api_key
def update(subscription_id: str):
    """Change url, events, description or enabled."""
    r = services().redis
    sub = subscriptions.get_for_key(r, subscription_id, g.api_key.id)
    data = load(SubscriptionUpdateSchema(), json_body())
    if "url" in data:
        _check_url(data["url"])
    if data.get("enabled"):
        data.update(failing_since=None, last_failure_at=None, disabled_reason="")
    return jsonify(_found(subscriptions.update(r, sub.id, **data), subscription_id).public())


@bp.delete("/subscriptions/<subscription_id>")
@require_api_key
def delete(subscription_id: str):
    """Remove a subscription."""
    r = services().redis
    subscriptions.delete(r, subscriptions.get_for_key(r, subscription_id, g.api_key.id))
    return "", 204


@bp.post("/subscriptions/<subscription_id>/rotate-secret")
@require_api_key
def rotate(subscription_id: str):
    """Make a new secret; the old one keeps signing beside it for the grace period."""
    r = services().redis
    sub = subscriptions.get_for_key(r, subscription_id, g.api_key.id)
    sub = _found(subscriptions.rotate_secret(r, sub.id, services().settings.secret_grace),
                 subscription_id)
    return jsonify(_with_secret(sub))


@bp.post("/subscriptions/<subscription_id>/test")
@require_api_key
def ping(subscription_id: str):
    """Send a ``test.ping`` event to the subscription."""
    sub = subscriptions.get_for_key(services().redis, subscription_id, g.api_key.id)
    delivery_id = events.emit_to_subscription(services(), sub, "test.ping",
                                              {"subscription_id": sub.id})
    return jsonify({"delivery_id": delivery_id}), 202


@bp.get("/subscriptions/<subscription_id>/deliveries")
@require_api_key
def list_deliveries(subscription_id: str):
    """The delivery log of a subscription, newest first, with every attempt."""
    r = services().redis
    sub = subscriptions.get_for_key(r, subscription_id, g.api_key.id)
    limit = request.args.get("limit", "50")
    # ASCII digits only: "²".isdigit() is True, and int("²") raises.
    if not re.fullmatch(r"[0-9]{1,3}", limit, re.ASCII) or not 1 <= int(limit) <= 200:
        raise InvalidInputError("limit must be a whole number between 1 and 200", field="limit")
    found = deliveries.list_for_subscription(r, sub.id, limit=int(limit))
    return jsonify({"deliveries": [d.public() for d in found]})


def _own_delivery(delivery_id: str) -> Delivery:
    found = deliveries.get(services().redis, delivery_id)
    if found is None or found.key_id != g.api_key.id:
        raise NotFoundError(f"No delivery {delivery_id!r}")
    return found


@bp.get("/deliveries/<delivery_id>")
@require_api_key
def get_delivery(delivery_id: str):
    """One delivery and its attempts."""
    return jsonify(_own_delivery(delivery_id).public())


def redeliver_one(delivery_id: str) -> Delivery | None:
    """Send a delivery again now, with the same webhook-id; None while an attempt runs."""
    svc = services()
    reopened = deliveries.reopen(svc.redis, delivery_id)
    if reopened is not None:
        queues.enqueue_delivery(svc.rq, svc.settings, delivery_id, trigger="manual")
    return reopened


@bp.post("/deliveries/<delivery_id>/redeliver")
@require_api_key
def redeliver(delivery_id: str):
    """Send one delivery again (same webhook-id)."""
    reopened = redeliver_one(_own_delivery(delivery_id).id)
    if reopened is None:
        raise ConflictError("an attempt of this delivery is under way; try again when it ends")
    return jsonify(reopened.public()), 202


@bp.post("/subscriptions/<subscription_id>/recover")
@require_api_key
def recover(subscription_id: str):
    """Send again failed deliveries since a time (at most 14 days back), oldest first.

    One call sends at most RECOVER_MAX and looks at most at RECOVER_SCAN deliveries; when it
    stops early, ``more`` is true and ``next_since`` is the ``since`` of the next call.
    """
    r = services().redis
    sub = subscriptions.get_for_key(r, subscription_id, g.api_key.id)
    since = load(RecoverSchema(), json_body())["since"].timestamp()
    if since < time.time() - RECOVER_WINDOW:
        raise InvalidInputError("since must be within the last 14 days", field="since")
    failed, resume = deliveries.failed_for_subscription(r, sub.id, since, limit=RECOVER_MAX,
                                                        scan=RECOVER_SCAN)
    sent = [d.id for d in failed if redeliver_one(d.id) is not None]
    return jsonify({"redelivered": sent, "count": len(sent), "more": resume is not None,
                    "next_since": None if resume is None else iso(resume)}), 202


@bp.get("/webhook-secret")
@require_api_key
def webhook_secret():
    """The secret that signs this key's per-request webhooks (webhook_url)."""
    return jsonify({"secret": subscriptions.key_secret(services().redis, g.api_key.id)})


@bp.post("/proxy-tokens")
@require_api_key
def create_proxy_token():
    """Make a short-lived token that authorises only /api/fal/proxy, for browser code."""
    body = json_body(optional=True)  # None: no body at all (a JSON null is refused)
    if request.get_data() and not isinstance(body, dict):
        raise InvalidInputError('the body must be a JSON object, e.g. {"ttl_seconds": 900}',
                                field="body")
    ttl = load(ProxyTokenSchema(), body or {})["ttl_seconds"]
    expires_at = int(time.time()) + ttl
    response = jsonify({"token": proxy_token(g.api_key.id, expires_at), "expires_at": expires_at})
    response.status_code = 201
    return response
