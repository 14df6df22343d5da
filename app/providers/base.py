"""The one small interface every provider implements."""

from __future__ import annotations

from typing import Protocol

from app.models import Request
from app.services import Services


class Provider(Protocol):
    """Runs a request and makes sure a signed callback reaches ``/webhooks/fal``."""

    name: str

    def submit(self, services: Services, request: Request) -> str:
        """Hand the request over; return the provider's request id (linked before return).

        Returns "" when the provider may have taken it without our seeing its answer: its
        callback (or reconciliation) settles it.
        """

    def cancel(self, services: Services, request: Request) -> bool:
        """Ask the provider to stop the request, before our record moves to CANCELLED.

        Returns:
            True when the provider could not be told now and must be told later.

        Raises:
            InvalidStateError: the provider has already finished the request.
        """

    def cancelled(self, services: Services, request: Request, pending: bool) -> None:
        """Finish a cancel once the record is CANCELLED (``pending``: what ``cancel`` said)."""
