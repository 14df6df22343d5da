"""The collaborators one process needs, built once from Settings (no Flask).

Every long-lived collaborator lives here, and nowhere else at module level: the Redis
clients, file storage, our signing key, the pose engine, pooled HTTP clients and the
cache of fal's keys. The web app keeps its Services in ``app.extensions["posehook"]``; RQ
jobs call :func:`current`, which builds them from the environment on first use. Tests
install their own with :func:`install`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis import Redis

from app.config import Settings, load_settings

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.engine import Engine
    from app.sending import Sender
    from app.signing.fal import JwksCache
    from app.signing.standard import Signatures
    from app.storage import LocalStorage
    from app.storage_s3 import S3Storage


@dataclass
class Services:
    """Settings plus the clients built from them; cheap to make, lazy where costly."""

    settings: Settings
    redis: Redis
    rq: Redis
    sender_detached: bool = False
    """Set by the delivery worker: its sender outlives each job (``app.sending``)."""
    _cache: dict[Hashable, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Build the Redis clients for these settings."""
        from app.queues import rq_connection
        from app.store import connect

        sentinel = (settings.redis_sentinels, settings.redis_sentinel_master)
        return cls(settings=settings, redis=connect(settings.redis_url, *sentinel),
                   rq=rq_connection(settings.redis_url, *sentinel))

    def _once(self, name: Hashable, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = build()
            return self._cache[name]

    @property
    def storage(self) -> LocalStorage | S3Storage:
        """Return the file storage: the S3 bucket of POSEHOOK_STORAGE_URL, else the directory."""
        from app.storage import LocalStorage
        from app.storage_s3 import S3Storage

        settings = self.settings
        if settings.storage_url:
            return self._once("storage", lambda: S3Storage(
                settings.storage_url, settings.public_base_url,
                endpoint_url=settings.storage_endpoint_url, region=settings.storage_region,
                presign=settings.storage_presign))
        return self._once("storage", lambda: LocalStorage(settings.files_dir,
                                                          settings.public_base_url))

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """Return our ED25519 private key (shared through Redis)."""
        from app.signing.keys import load_signing_key

        return self._once("signing_key",
                          lambda: load_signing_key(self.redis, self.settings.signing_key))

    @property
    def signatures(self) -> Signatures:
        """Return our key's recent signatures (a fan-out's endpoints share one a second)."""
        from app.signing.standard import Signatures

        key = self.signing_key  # outside the lock: _once is not reentrant
        return self._once("signatures", lambda: Signatures(key))

    def for_settings(self, name: Hashable, build: Callable[[Settings], Any]) -> Any:
        """Return ``build(settings)``, made again only when the settings are replaced."""
        with self._lock:
            made = self._cache.get(("for-settings", name))
            if made is None or made[0] is not self.settings:
                made = self._cache["for-settings", name] = (self.settings, build(self.settings))
            return made[1]

    @property
    def engine(self) -> Engine:
        """Return the pose engine, loaded on first use (the inference worker preloads it)."""
        from app.engine import load_engine

        settings = self.settings
        models = (settings.dwpose_detector, settings.dwpose_pose)
        return self._once(("engine", settings.engine, settings.dwpose_model_dir, *models),
                          lambda: load_engine(settings.engine,
                                              settings.dwpose_model_dir or None, models))

    def client(self, key: Hashable, build: Callable[[], httpx.Client]) -> httpx.Client:
        """Return the pooled HTTP client made by ``build`` for ``key``, made once."""
        return self._once(("client", key), build)

    @property
    def callback_client(self) -> httpx.Client:
        """Return the client our inference worker calls our own ingress with."""
        import httpx

        return self.client("callback", lambda: httpx.Client(timeout=15, trust_env=False,
                                                            follow_redirects=False))

    def sender(self, run: Callable[[Any], object],
               keep: Callable[[list[Any]], object] | None = None) -> Sender:
        """Return this process's delivery sender (built once, with the first ``run`` and
        ``keep`` given, called with the items still lined up in a lane as it moves on).

        A lane moves on at least once per attempt (``delivery_job_timeout``); holding again
        every half of the lease's margin over that keeps a lined-up delivery held for good
        while its worker lives, and lets the sweeper have it one lease after a crash.
        """
        from app.sending import Sender

        settings = self.settings

        def build() -> Sender:
            sender = Sender(run, threads=settings.delivery_threads,
                            per_endpoint=settings.delivery_per_endpoint,
                            backlog=settings.delivery_backlog, keep=keep,
                            keep_every=(settings.delivery_lease
                                        - settings.delivery_job_timeout) / 2)
            sender.detached = self.sender_detached
            return sender

        return self._once("sender", build)

    def close_sender(self, wait: bool) -> None:
        """Stop the sender if one was built; with ``wait``, after what it took is sent."""
        with self._lock:
            sender = self._cache.get("sender")
        if sender is not None:  # still found while it drains, so a cold stop can cut it short
            sender.close(wait=wait)
            with self._lock:
                self._cache.pop("sender", None)

    def fal_keys(self) -> JwksCache:
        """Return the cache of fal's webhook keys (its JWKS, refreshed at most so often)."""
        from app.signing.fal import jwks_cache

        settings = self.settings
        return self._once(("jwks", settings.fal_jwks_url, settings.fal_jwks_min_refresh),
                          lambda: jwks_cache(settings.fal_jwks_url,
                                             settings.fal_jwks_min_refresh))


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
