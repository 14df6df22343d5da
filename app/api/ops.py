"""Operations: liveness, readiness, metrics, our public keys, the OpenAPI document."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, send_file
from redis.exceptions import RedisError

from app import queues, store
from app.api import OPENAPI, services
from app.signing.keys import jwks
from app.store import clock, deliveries, tracking
from app.store import files as stored_files
from app.store import workers as inference_workers

bp = Blueprint("ops", __name__)

SWEEP_LATE = 180
"""Seconds without a sweep (every 30 s normally) after which /readyz warns."""



@bp.get("/healthz")
def healthz():
    """Answer 200 while the process is up."""
    return jsonify({"status": "ok"})


def _queue_depths() -> dict[str, int]:
    svc = services()
    names = (*queues.FAST_QUEUES, *queues.INFERENCE_QUEUES)
    return {name: queues.queue(svc.rq, name).count for name in names}


@bp.get("/readyz")
def readyz():
    """Answer 200 when requests can be served: Redis answers and, with the local provider, an
    inference worker is alive (its heartbeat); report queues and the workers' engines."""
    svc = services()
    try:
        store.reachable(svc.redis)
    except Exception:  # noqa: BLE001 - any Redis failure means "not ready"
        return jsonify({"status": "unavailable", "redis": "down"}), 503
    workers = inference_workers.alive(svc.redis)
    pending = {"count": deliveries.pending_count(svc.redis),
               "oldest_age_seconds": round(deliveries.oldest_pending_age(svc.redis, time.time()),
                                           3)}
    swept = clock.last_swept(svc.redis)
    sweeper: dict = {"last_run_age_seconds": None if swept is None else
                     round(time.time() - swept, 1)}
    if swept is None or time.time() - swept > SWEEP_LATE:
        sweeper["warning"] = (f"the sweeper has not run in the last {SWEEP_LATE} s: is the "
                              "cron and the maintenance worker running?")
    body = {"status": "ok", "redis": "up", "queues": _queue_depths(), "sweeper": sweeper,
            "deliveries_pending": pending, "inference_workers": workers,
            "engine": workers[0].get("engine") if workers else None}
    if svc.settings.provider == "local" and not workers:
        body.update(status="unavailable",
                    reason="no inference worker is alive: requests would wait in the queue")
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/metrics")
def metrics():
    """Prometheus text: queue depths, queued and running requests (503 while Redis is down)."""
    try:
        return Response(_metrics_text(), mimetype="text/plain; version=0.0.4")
    except RedisError:
        return Response("# posehook: Redis is unavailable\nposehook_up 0\n", status=503,
                        mimetype="text/plain; version=0.0.4")


def _metrics_text() -> str:
    svc = services()
    lines = ["# TYPE posehook_up gauge", "posehook_up 1", "# TYPE posehook_queue_depth gauge"]
    for name, depth in _queue_depths().items():
        lines.append(f'posehook_queue_depth{{queue="{name}"}} {depth}')
    counts = tracking.counts(svc.redis)
    lines += ["# TYPE posehook_requests_queued gauge",
              f"posehook_requests_queued {counts['queued']}",
              "# TYPE posehook_requests_running gauge",
              f"posehook_requests_running {counts['running']}",
              "# TYPE posehook_deliveries_pending gauge",
              f"posehook_deliveries_pending {deliveries.pending_count(svc.redis)}",
              "# TYPE posehook_delivery_oldest_pending_seconds gauge",
              "posehook_delivery_oldest_pending_seconds "
              f"{deliveries.oldest_pending_age(svc.redis, time.time()):.3f}",
              *_storage_lines(svc),
              "# TYPE posehook_scrape_time_seconds gauge",
              f"posehook_scrape_time_seconds {time.time():.3f}"]
    return "\n".join(lines) + "\n"


def _storage_lines(svc) -> list[str]:
    """Stored files and bytes (every one has an owner and an expiry), and those past it."""
    use = stored_files.usage(svc.redis, time.time())
    return ["# TYPE posehook_storage_files gauge", f"posehook_storage_files {use['files']}",
            "# TYPE posehook_storage_bytes gauge", f"posehook_storage_bytes {use['bytes']}",
            "# TYPE posehook_storage_files_expired gauge",
            f"posehook_storage_files_expired {use['due']}"]


@bp.get("/.well-known/jwks.json")
def well_known_jwks():
    """Publish our ED25519 public key(s): callbacks and webhooks we sign verify against them."""
    response = jsonify(jwks(services().signing_key.public_key()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/openapi.yaml")
def openapi():
    """Serve the API contract."""
    return send_file(OPENAPI, mimetype="application/yaml")
