"""Providers run a request somewhere and call our webhook back: ``local`` or ``fal``."""

from __future__ import annotations

from app.providers.base import Provider


def get_provider(name: str) -> Provider:
    """Return the provider called ``name``."""
    if name == "local":
        from app.providers.local import LocalProvider

        return LocalProvider()
    if name == "fal":
        from app.providers.fal import FalProvider

        return FalProvider()
    raise ValueError(f"unknown provider {name!r}")
