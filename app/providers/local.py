"""The local provider: our own inference worker runs the engine, then calls back like fal."""

from __future__ import annotations

from app import queues
from app.models import Request
from app.services import Services
from app.store import requests as store


class LocalProvider:
    """Enqueue ``jobs.infer`` on the inference queue; the request id is the provider's id."""

    name = "local"

    def submit(self, services: Services, request: Request) -> str:
        """Link our id as the provider id, then enqueue the inference job."""
        store.link_provider_ref(services.redis, self.name, request.id, request.id,
                                services.settings.request_ttl)
        store.update(services.redis, request.id, provider_ref=request.id)
        queues.enqueue_infer(services.rq, services.settings, request.id, request.attempts,
                             low=request.priority == "low",
                             video="video_url" in request.input)
        return request.id

    def cancel(self, services: Services, request: Request) -> bool:
        """Nothing to ask before the record moves: our own worker reads the record."""
        return False

    def cancelled(self, services: Services, request: Request, pending: bool) -> None:
        """Drop the queued inference job; a running one stops at its next step (jobs.infer)."""
        queues.cancel_infer(services.rq, request.id, request.attempts)
