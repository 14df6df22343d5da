"""Every Redis key template of posehook, in one place: ``posehook:<record>:<id>``."""

from __future__ import annotations

PREFIX = "posehook"


def key_for_request(request_id: str) -> str:
    """Hash of one request."""
    return f"{PREFIX}:request:{request_id}"


def key_for_request_logs(request_id: str) -> str:
    """List of a request's log lines (JSON)."""
    return f"{PREFIX}:request:{request_id}:logs"


def key_for_requests_of(key_id: str) -> str:
    """Sorted set of one API key's requests by creation time (ms)."""
    return f"{PREFIX}:requests:by-key:{key_id}"


def key_for_requests_of_status(key_id: str, status: str) -> str:
    """Sorted set of one API key's requests now in ``status``, by creation time (ms)."""
    return f"{key_for_requests_of(key_id)}:status:{status}"


def key_for_queue() -> str:
    """Sorted set of queued request ids by creation time: queue positions."""
    return f"{PREFIX}:requests:queued"


def key_for_events_owed() -> str:
    """Sorted set of finished request ids whose terminal event is not yet fanned out, by time."""
    return f"{PREFIX}:requests:events-owed"


def key_for_leases() -> str:
    """Sorted set of in-progress request ids by lease expiry (s)."""
    return f"{PREFIX}:requests:leases"


def key_for_provider_ref(provider: str, ref: str) -> str:
    """String: a provider's request id → our request id."""
    return f"{PREFIX}:provider-ref:{provider}:{ref}"


def key_for_idempotency(key_id: str, idem_key: str) -> str:
    """Hash: idempotency key → request id and body hash."""
    return f"{PREFIX}:idempotency:{key_id}:{idem_key}"


def key_for_callback(callback_id: str) -> str:
    """Hash of one received webhook callback."""
    return f"{PREFIX}:callback:{callback_id}"


def key_for_callbacks_pending() -> str:
    """Sorted set of callbacks not yet settled, by receive time."""
    return f"{PREFIX}:callbacks:pending"


def key_for_callbacks_unmatched() -> str:
    """Sorted set of callbacks whose request id we do not know, by receive time."""
    return f"{PREFIX}:callbacks:unmatched"


def key_for_api_key(key_hash: str) -> str:
    """Hash of one API key, found by the SHA-256 of the key."""
    return f"{PREFIX}:api-key:{key_hash}"


def key_for_api_keys() -> str:
    """Hash: key id → key hash, to list and revoke."""
    return f"{PREFIX}:api-keys"


def key_for_signing_key() -> str:
    """String: our ED25519 private key (base64 raw), created once with SET NX."""
    return f"{PREFIX}:signing-key"


def key_for_subscription(subscription_id: str) -> str:
    """Hash of one subscription."""
    return f"{PREFIX}:subscription:{subscription_id}"


def key_for_subscriptions_of(key_id: str) -> str:
    """Set of one API key's subscription ids."""
    return f"{PREFIX}:subscriptions:by-key:{key_id}"


def key_for_delivery(delivery_id: str) -> str:
    """Hash of one delivery (event, endpoint)."""
    return f"{PREFIX}:delivery:{delivery_id}"


def key_for_metric(name: str) -> str:
    """Counter of one metric."""
    return f"{PREFIX}:metric:{name}"


def key_for_worker_heartbeat(worker: str) -> str:
    """Hash: an inference worker's engine and last beat (expires when it stops beating)."""
    return f"{PREFIX}:inference-worker:{worker}"


def key_for_key_secret(key_id: str) -> str:
    """String: the webhook secret of an API key (per-request webhooks)."""
    return f"{PREFIX}:key-webhook-secret:{key_id}"


def key_for_deliveries_of(subscription_id: str) -> str:
    """Sorted set of a subscription's deliveries by creation time."""
    return f"{PREFIX}:deliveries:by-subscription:{subscription_id}"


def key_for_deliveries_due() -> str:
    """Sorted set: pending delivery id → when it must next be attempted (or its lease ends)."""
    return f"{PREFIX}:deliveries:due"


def key_for_deliveries_pending() -> str:
    """Sorted set: pending delivery id → creation time (oldest pending age)."""
    return f"{PREFIX}:deliveries:pending"


def key_for_delivery_lock(delivery_id: str) -> str:
    """String held while one attempt of a delivery is under way."""
    return f"{PREFIX}:delivery-lock:{delivery_id}"


def key_for_upload_slot(slot: str) -> str:
    """Hash: a one-time upload slot (fal storage protocol) → the key its file will get."""
    return f"{PREFIX}:upload-slot:{slot}"


def key_for_sweep_clock() -> str:
    """String set for one sweep interval by whichever clock process enqueued the sweep."""
    return f"{PREFIX}:sweep:clock"


def key_for_last_sweep() -> str:
    """String: the RQ job id of the last sweep enqueued."""
    return f"{PREFIX}:sweep:last"


def key_for_file(storage_key: str) -> str:
    """Hash of one stored file: its owner (``upload`` or ``request:<id>``) and size."""
    return f"{PREFIX}:file:{storage_key}"


def key_for_files_expiry() -> str:
    """Sorted set: stored file key → when it may be deleted (s)."""
    return f"{PREFIX}:files:expiry"


def key_for_files_deleting() -> str:
    """Sorted set: stored file key → when the janitor took it for deletion (s)."""
    return f"{PREFIX}:files:deleting"


def key_for_files_bytes() -> str:
    """Counter: bytes of all tracked stored files."""
    return f"{PREFIX}:files:bytes"
