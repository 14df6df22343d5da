"""Operations endpoints and the contract document itself."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate

from app import events
from tests.contract import spec


def test_the_openapi_document_is_valid_and_served(live):
    validate(spec())
    answer = httpx.get(f"{live.url}/openapi.yaml")
    assert answer.status_code == 200 and b"openapi: 3.1.0" in answer.content


def test_health_and_readiness(live, services):
    import time

    from app.store.keys import key_for_worker_heartbeat

    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    # No inference worker: requests would only queue, so not ready.
    alone = httpx.get(f"{live.url}/readyz")
    assert alone.status_code == 503 and "no inference worker" in alone.json()["reason"]
    services.redis.hset(key_for_worker_heartbeat("w1"), mapping={
        "name": "w1", "engine": "mediapipe:test", "beat": repr(time.time())})
    ready = httpx.get(f"{live.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["redis"] == "up" and "inference" in body["queues"]
    assert body["engine"] == "mediapipe:test"
    assert "has not run" in body["sweeper"]["warning"]  # no sweep yet


def test_readiness_says_how_long_ago_the_sweeper_ran(live, services, run_jobs):
    from app import queues

    queues.enqueue_sweep(services.rq)
    run_jobs()
    sweeper = httpx.get(f"{live.url}/readyz").json()["sweeper"]
    assert "warning" not in sweeper and 0 <= sweeper["last_run_age_seconds"] < 60


def test_metrics_show_queue_depth_and_the_oldest_pending_delivery(live, services):
    sub_url = "http://127.0.0.1:9/hook"  # nobody listens: the delivery stays pending
    from app.store import subscriptions

    sub = subscriptions.create(services.redis, "key_m", sub_url, ["*"])
    events.emit_to_subscription(services, sub, "test.ping", {})
    text = httpx.get(f"{live.url}/metrics").text
    assert 'posehook_queue_depth{queue="delivery"} 1' in text
    assert "posehook_deliveries_pending 1" in text
    assert "posehook_delivery_oldest_pending_seconds" in text


def test_jwks_publishes_our_signing_key(live, services):
    keys = httpx.get(f"{live.url}/.well-known/jwks.json").json()["keys"]
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519"
    from app.signing.keys import jwk

    assert keys[0] == jwk(services.signing_key.public_key())


def test_metrics_say_redis_is_down_with_a_503(overrides, redis):
    from app import create_app

    app = create_app({**overrides, "redis_url": "redis://127.0.0.1:9/0"})  # nothing listens
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 503 and b"posehook_up 0" in answer.data


def test_every_metric_and_queue_is_explained_in_the_deployment_guide(app):
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    names = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
    queue_names = set(re.findall(r'queue="([\w-]+)"', text))
    assert len(names) >= 10 and "posehook_storage_files_expired" in names
    documented = set(re.findall(r"^\| `(posehook_\w+)", guide, re.M))
    assert names == documented  # a new metric gets its row (and its alarm) in docs/deploy.md
    assert all(f"`{q}`" in guide for q in queue_names)
