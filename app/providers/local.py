"""The local provider: our own inference worker runs the engine, then calls back like fal."""

from __future__ import annotations

from app import queues
from app.models import Request
from app.services import Services
from app.store import requests as store


def infer_job_id(request: Request) -> str:
    """Return the RQ job id of a request's inference attempt."""
    return f"infer-{request.id}-{request.attempts}"


class LocalProvider:
    """Enqueue ``jobs.infer`` on the inference queue; the request id is the provider's id."""

    name = "local"

    def submit(self, services: Services, request: Request) -> str:
        """Link our id as the provider id, then enqueue the inference job."""
        settings = services.settings
        store.link_provider_ref(services.redis, self.name, request.id, request.id,
                                settings.request_ttl)
        store.update(services.redis, request.id, provider_ref=request.id)
        queues.enqueue(services.rq, queues.INFERENCE, queues.JOB_INFER, request.id,
                       job_id=infer_job_id(request), timeout=settings.job_timeout,
                       retry=(2, 10, 30), unique=True)
        return request.id

    def cancel(self, services: Services, request: Request) -> None:
        """Drop the queued inference job; a running one sees CANCELLED and its result is ignored."""
        queues.cancel_job(services.rq, infer_job_id(request))
