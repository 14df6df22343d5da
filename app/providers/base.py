"""The one small interface every provider implements."""

from __future__ import annotations

from typing import Protocol

from app.models import Request
from app.services import Services


class Provider(Protocol):
    """Runs a request and makes sure a signed callback reaches ``/webhooks/fal``."""

    name: str

    def submit(self, services: Services, request: Request) -> str:
        """Hand the request over; return the provider's request id (linked before return)."""

    def cancel(self, services: Services, request: Request) -> None:
        """Ask the provider to stop the request (best effort)."""
