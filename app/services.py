"""The collaborators one process needs, built once from Settings (no Flask).

The web app keeps its Services in ``app.extensions["posehook"]``; RQ jobs call
:func:`current`, which builds them from the environment on first use. Tests install
their own with :func:`install`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from app.config import Settings, load_settings


@dataclass
class Services:
    """Settings plus the clients built from them; cheap to make, lazy where costly."""

    settings: Settings
    redis: Redis
    rq: Redis
    _cache: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Build the Redis clients for these settings."""
        from app.queues import rq_connection
        from app.store import connect

        return cls(settings=settings, redis=connect(settings.redis_url),
                   rq=rq_connection(settings.redis_url))

    def _once(self, name: str, build: Any) -> Any:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = build()
            return self._cache[name]

    @property
    def storage(self) -> Any:
        """Return the file storage."""
        from app.storage import LocalStorage

        return self._once("storage", lambda: LocalStorage(self.settings.files_dir,
                                                          self.settings.public_base_url))

    @property
    def signing_key(self) -> Any:
        """Return our ED25519 private key (shared through Redis)."""
        from app.signing.keys import load_signing_key

        return self._once("signing_key",
                          lambda: load_signing_key(self.redis, self.settings.signing_key))


_current: Services | None = None
_current_lock = threading.Lock()


def install(services: Services | None) -> None:
    """Make ``services`` the process's current Services (tests; None to reset)."""
    global _current
    _current = services


def current() -> Services:
    """Return the process's Services, built from the environment on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = Services.from_settings(load_settings())
        return _current
