"""Events about requests and their fan-out to subscribers (outbound webhooks).

``emit`` is called by jobs after a state change. Deliveries to subscriptions and
per-request webhook URLs are built on this seam (see the subscriptions work).
"""

from __future__ import annotations

import logging

from app.services import Services

log = logging.getLogger(__name__)

EVENT_TYPES = ("request.queued", "request.started", "request.completed", "request.failed",
               "request.cancelled")


def emit(services: Services, request_id: str, event_type: str) -> list[str]:
    """Record that ``event_type`` happened to a request; return the delivery ids created."""
    log.info("event %s for request %s", event_type, request_id)
    return []
