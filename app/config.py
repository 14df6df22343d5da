"""One Settings object, read from the environment once and validated at start.

Nothing else in posehook reads ``os.environ``: the app factory, the workers and the
commands all call :func:`load_settings`, and tests pass overrides as a mapping.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A setting is missing or has a value we cannot use."""


def _env_name(name: str) -> str:
    """Return the environment variable of a field (world names keep their own)."""
    return name.upper() if name in _WORLD_NAMES else "POSEHOOK_" + name.upper()


_WORLD_NAMES = {"redis_url", "fal_key", "dwpose_model_dir", "redis_sentinels",
                "redis_sentinel_master"}


@dataclass(frozen=True)
class Settings:
    """Every knob of the service, with its default. Environment: POSEHOOK_<NAME>."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis behind Sentinel: host:port of each sentinel and the master's name; REDIS_URL then
    # gives only the database, user and password (its host is not used).
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    # Where our own workers reach the web process (callbacks to /webhooks/fal).
    internal_base_url: str = ""
    data_dir: str = "./data"
    # Storage of files: a local directory (default) under data_dir/files, or an S3-compatible
    # bucket (s3://bucket/prefix; credentials from the usual AWS variables). The endpoint and
    # region default to boto3's own (AWS_ENDPOINT_URL_S3, AWS_REGION, ...).
    storage_dir: str = ""
    storage_url: str = ""
    storage_endpoint_url: str = ""
    storage_region: str = ""
    # Seconds a presigned URL lives: /files/<key> redirects to one (0: we stream the file).
    storage_presign: int = 0
    # Retention: an upload no request used is deleted after upload_ttl; a request's input
    # and outputs go with its record (request_ttl), by the janitor the sweeper enqueues.
    upload_ttl: int = 24 * 3600

    # Inputs and limits.
    max_download_bytes: int = 20 * 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    # fal-style multipart uploads (the client's way for files over 90 MB): the whole file.
    max_multipart_bytes: int = 1024 * 1024 * 1024
    download_timeout: float = 15.0
    max_redirects: int = 3
    max_pixels: int = 40_000_000
    allow_private_urls: bool = False
    # Videos (input.video_url): the file, its length, frames, pixels per frame, frame rate;
    # and the seconds of job time each frame adds to job_timeout.
    video_max_bytes: int = 100 * 1024 * 1024
    video_max_seconds: float = 120.0
    video_max_frames: int = 3600
    video_max_pixels: int = 1920 * 1080
    video_max_fps: float = 60.0
    video_frame_seconds: float = 1.0
    allowed_cidrs: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    https_only: bool = False

    # Jobs.
    provider: str = "local"
    engine: str = "auto"
    dwpose_model_dir: str = ""
    # The dwpose engine's models, by their names in app/engine/dwpose/registry.py.
    dwpose_detector: str = "yolox-l"
    dwpose_pose: str = "dwpose-l-384"
    job_timeout: int = 120
    max_attempts: int = 2
    # How long past job_timeout a running request may go silent before the sweeper acts.
    lease_grace: int = 60
    # Seconds between two sweeps (jobs.cron's clock).
    sweep_interval: float = 30.0
    idempotency_ttl: int = 24 * 3600
    request_ttl: int = 30 * 24 * 3600
    # Backpressure: queued requests allowed in all and per API key (0: no bound), and each
    # key's submit rate (a token bucket: this many per second, bursts of rate_burst).
    max_queued: int = 2000
    max_queued_per_key: int = 500
    rate_per_key: float = 20.0
    rate_burst: int = 40

    # Webhook ingress.
    webhook_tolerance: int = 300
    max_webhook_bytes: int = 1024 * 1024
    fal_key: str = ""
    fal_queue_url: str = "https://queue.fal.run"
    fal_jwks_url: str = "https://rest.alpha.fal.ai/.well-known/jwks.json"
    fal_app: str = "fal-ai/dwpose"
    reconcile_after: int = 600
    fal_jwks_min_refresh: float = 60.0
    # Seconds to wait for fal's answer, and for a connection to fal (a connect that times out
    # never reached fal and is retried; an answer that times out may follow a request fal took).
    fal_timeout: float = 30.0
    fal_connect_timeout: float = 5.0
    # Tries to settle a finished request (copy fal's output) before it fails with the reason.
    settle_tries: int = 5
    # Forward mode only, for tests: send calls meant for fal's hosts to this base URL.
    fal_forward_base_url: str = ""
    # Our own /files inputs go to fal as data URIs up to this size (fal cannot reach us).
    fal_max_data_uri_bytes: int = 10 * 1024 * 1024
    # How long a sync run (fal.run) waits for its result before it is cancelled (504).
    fal_sync_wait: float = 60.0

    # fal's own hosts served directly (the Python fal-client): a TLS listener on this
    # host:port with this certificate and key (PEM files); off when the bind is empty.
    fal_host_bind: str = ""
    fal_host_certfile: str = ""
    fal_host_keyfile: str = ""

    # Our own ED25519 signing key (PEM or base64 raw 32 bytes); generated into Redis if empty.
    signing_key: str = ""

    # Outbound webhooks to subscribers.
    delivery_schedule: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    delivery_connect_timeout: float = 5.0
    delivery_timeout: float = 15.0
    delivery_disable_after: int = 5 * 24 * 3600
    secret_grace: int = 24 * 3600
    # 429/502/503/504 and timeouts wait at least this long before the next attempt.
    delivery_overload_delay: float = 60.0
    delivery_jitter: float = 0.2
    # One fan-out's deliveries go out side by side: so many at once per worker process, at
    # most so many to one endpoint (a slow one cannot hold the rest), so many lined up there.
    delivery_threads: int = 16
    delivery_per_endpoint: int = 4
    delivery_backlog: int = 1000

    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def callback_base_url(self) -> str:
        """Return the base URL our own workers use to call our webhook ingress."""
        return (self.internal_base_url or self.public_base_url).rstrip("/")

    @property
    def delivery_job_timeout(self) -> int:
        """Return the seconds RQ lets one delivery job run.

        An attempt connects, then answers within ``delivery_timeout`` (checked between reads,
        so one last read may block that long again); a few seconds more for DNS and Redis.
        """
        return math.ceil(self.delivery_connect_timeout + 2 * self.delivery_timeout) + 5

    @property
    def delivery_lease(self) -> int:
        """Return the seconds an attempt holds its delivery: longer than the job may run.

        RQ stops the job at ``delivery_job_timeout``; the margin lets it record the attempt
        (or an uninterruptible DNS lookup end) before the sweeper may start another.
        """
        return self.delivery_job_timeout + 10

    @property
    def video_job_timeout(self) -> int:
        """Return the seconds RQ lets a video job run: its limit at the most frames allowed.

        The job itself stops sooner, at ``job_timeout`` + frames x ``video_frame_seconds``
        once it knows the frame count.
        """
        return math.ceil(self.job_timeout + self.video_max_frames * self.video_frame_seconds)

    @property
    def files_dir(self) -> str:
        """Return the directory of stored files."""
        return self.storage_dir or os.path.join(self.data_dir, "files")

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (validated again)."""
        return _validate(dataclasses.replace(self, **changes))


def _parse(kind: Any, raw: str, name: str) -> Any:
    """Convert one environment string to the field's type."""
    text = raw.strip()
    try:
        if kind in (bool, "bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
        if kind in ("tuple[str, ...]",):
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if kind in ("tuple[float, ...]",):
            return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigError(f"{_env_name(name)}={raw!r} is not a valid {kind}") from exc
    return text


def _validate(settings: Settings) -> Settings:
    """Fail fast with a message that names the variable to fix."""
    if settings.provider not in ("local", "fal"):
        raise ConfigError("POSEHOOK_PROVIDER must be 'local' or 'fal'")
    if settings.provider == "fal" and not settings.fal_key:
        raise ConfigError("FAL_KEY must be set when POSEHOOK_PROVIDER=fal")
    if settings.engine not in ("auto", "mediapipe", "mediapipe-holistic", "dwpose"):
        raise ConfigError("POSEHOOK_ENGINE must be 'auto', 'mediapipe', 'mediapipe-holistic' "
                          "or 'dwpose'")
    if not settings.public_base_url.startswith(("http://", "https://")):
        raise ConfigError("POSEHOOK_PUBLIC_BASE_URL must be an http(s) URL")
    for name in ("max_download_bytes", "max_upload_bytes", "max_multipart_bytes", "max_pixels",
                 "job_timeout", "fal_timeout", "fal_connect_timeout", "settle_tries",
                 "video_max_bytes", "video_max_seconds", "video_max_frames", "video_max_pixels",
                 "video_max_fps", "video_frame_seconds", "sweep_interval", "fal_sync_wait",
                 "delivery_per_endpoint", "delivery_backlog"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{_env_name(name)} must be positive")
    from app.engine.dwpose.registry import spec

    for name, kind in (("dwpose_detector", "detector"), ("dwpose_pose", "pose")):
        try:
            spec(getattr(settings, name), kind)
        except ValueError as exc:
            raise ConfigError(f"{_env_name(name)}: {exc}") from None
    if settings.fal_host_bind and not (settings.fal_host_certfile and settings.fal_host_keyfile):
        raise ConfigError("POSEHOOK_FAL_HOST_BIND needs POSEHOOK_FAL_HOST_CERTFILE and "
                          "POSEHOOK_FAL_HOST_KEYFILE (make run FAL_HOSTS=1 makes a development "
                          "pair)")
    if bool(settings.redis_sentinels) != bool(settings.redis_sentinel_master):
        raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together")
    for address in settings.redis_sentinels:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"REDIS_SENTINELS: {address!r} is not host:port")
    if settings.storage_url and not settings.storage_url.startswith("s3://"):
        raise ConfigError("POSEHOOK_STORAGE_URL must be s3://bucket/prefix (or empty: the "
                          "local directory)")
    if settings.storage_url:
        from app.storage_s3 import parse_s3_url

        try:
            parse_s3_url(settings.storage_url)
        except ValueError as exc:
            raise ConfigError(f"POSEHOOK_STORAGE_URL: {exc}") from exc
    if not 0 <= settings.storage_presign <= 7 * 86400:
        raise ConfigError("POSEHOOK_STORAGE_PRESIGN must be 0..604800 seconds (S3's limit)")
    if settings.storage_presign and not settings.storage_url:
        raise ConfigError("POSEHOOK_STORAGE_PRESIGN needs POSEHOOK_STORAGE_URL=s3://...")
    for name in ("upload_ttl", "request_ttl"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{_env_name(name)} must be positive")
    if settings.delivery_threads <= settings.delivery_per_endpoint:
        raise ConfigError("POSEHOOK_DELIVERY_THREADS must be more than "
                          "POSEHOOK_DELIVERY_PER_ENDPOINT (one endpoint never holds them all)")
    if not settings.delivery_schedule:
        raise ConfigError("POSEHOOK_DELIVERY_SCHEDULE needs at least one delay")
    return settings


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read Settings from the environment, then apply overrides (field names, any case)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        raw = env.get(_env_name(f.name))
        if raw is not None:
            values[f.name] = _parse(f.type, raw, f.name)
    extra: dict[str, Any] = {}
    known = {f.name for f in fields(Settings)}
    for key, value in (overrides or {}).items():
        name = key.lower()
        if name in known:
            values[name] = tuple(value) if isinstance(value, list) else value
        else:
            extra[key] = value
    values["extra"] = extra
    return _validate(Settings(**values))
