"""The request state table, proved move by move, and the order events are announced in."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest

from app import lifecycle
from app.models import TRANSITIONS, Status
from app.store import requests as store
from app.store import tracking

ALL = list(Status)


def _record_in(services, state: Status) -> str:
    """A stored request put straight into ``state``, its sets as that state has them."""
    record, _ = store.create(services.redis, key_id="k", input={"image_url": "x"},
                             provider="local")
    if state is not Status.IN_QUEUE:
        # Every state is reachable from IN_QUEUE in one move of the table.
        assert store.transition(services.redis, record.id, state, (Status.IN_QUEUE,),
                                announce=False, lease_until=1e12) is not None
    return record.id


def _sets(services, request_id: str) -> tuple[bool, bool, bool]:
    r = services.redis
    return (tracking.queue_position(r, request_id) is not None,
            request_id in tracking.expired_leases(r, 1e13),
            request_id in tracking.events_owed(r, 1e13))


def test_the_table_has_every_state_and_terminal_states_are_never_left():
    assert set(TRANSITIONS) == set(Status)
    terminal = {s for s in Status if s.is_terminal}
    assert terminal == {Status.COMPLETED, Status.FAILED, Status.CANCELLED}
    assert not any(terminal & sources for sources in TRANSITIONS.values())


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)),
                         ids=lambda s: s.value)
def test_each_move_is_allowed_exactly_when_the_table_says(services, source, target):
    request_id = _record_in(services, source)
    allowed = source in TRANSITIONS[target]
    sequence = store.transition(services.redis, request_id, target, TRANSITIONS[target],
                                lease_until=1e12 if target is Status.IN_PROGRESS else None)
    record = store.get(services.redis, request_id)
    if not allowed:
        assert sequence is None and record.status is source
        return
    assert sequence == 1 and record.status is target and record.event_seq == 1
    # The sets follow the state in the same step (the table in app/store/__init__.py).
    assert _sets(services, request_id) == (target is Status.IN_QUEUE,
                                           target is Status.IN_PROGRESS, target.is_terminal)


@pytest.mark.parametrize("target", ALL, ids=lambda s: s.value)
def test_a_source_outside_the_table_is_refused_before_redis_is_asked(services, target):
    request_id = _record_in(services, Status.IN_QUEUE)
    outside = set(ALL) - TRANSITIONS[target]
    with pytest.raises(ValueError):
        store.transition(services.redis, request_id, target, outside)
    assert store.get(services.redis, request_id).status is Status.IN_QUEUE


def test_requeue_puts_the_request_back_at_its_old_place_in_one_step(services):
    first = _record_in(services, Status.IN_PROGRESS)
    second = _record_in(services, Status.IN_QUEUE)
    assert lifecycle.requeue(services, first, "worker lost")
    assert tracking.queue_position(services.redis, first) == 0
    assert tracking.queue_position(services.redis, second) == 1
    assert first not in tracking.expired_leases(services.redis, 1e13)
    assert store.get(services.redis, first).event_seq == 0  # requeues are not announced


def test_verbs_move_log_and_refuse_once_finished(services):
    request_id = _record_in(services, Status.IN_QUEUE)
    record = store.get(services.redis, request_id)
    assert lifecycle.start(services, record, lease_until=1e12, note="go")
    assert not lifecycle.start(services, record, lease_until=1e12, note="again")
    assert lifecycle.fail(services, request_id, {"type": "x", "message": "broke"})
    assert not lifecycle.complete(services, request_id, {"image": {}})
    with pytest.raises(Exception, match="already finished with status FAILED"):
        lifecycle.cancel(services, store.get(services.redis, request_id))
    lines = [(line["message"], line["level"]) for line in store.logs(services.redis, request_id)]
    assert lines == [("go", "INFO"), ("broke", "ERROR")]
    assert store.get(services.redis, request_id).event_seq == 2


def _subscribe(http, url: str) -> None:
    assert http.post("/v1/subscriptions", json={"url": url, "events": ["*"]}).status_code == 201


def _events(sink) -> list[tuple[str, int, str]]:
    got = [json.loads(x.body) for x in sink.received]
    return sorted((e["type"], e["data"]["sequence"], e["data"]["status"]) for e in got)


def test_events_come_numbered_in_the_order_things_happened(http, run_jobs, sample_bytes):
    from tests.sinks import Sink

    sink = Sink().start()
    try:
        _subscribe(http, sink.url)
        uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
        assert http.post("/v1/requests", json={"input": {"image_url": uri}}).status_code == 202
        run_jobs()
        by_sequence = sorted(_events(sink), key=lambda e: e[1])
        assert by_sequence == [("request.queued", 1, "IN_QUEUE"),
                               ("request.started", 2, "IN_PROGRESS"),
                               ("request.completed", 3, "COMPLETED")]
    finally:
        sink.stop()


def test_a_cancel_while_queued_means_the_job_never_runs(http, services, run_jobs, body_uri):
    request_id = http.post("/v1/requests", json={"input": {"image_url": body_uri}}
                           ).json()["request_id"]
    answer = http.put(f"/v1/requests/{request_id}/cancel")
    assert answer.status_code == 202 and answer.json()["status"] == "CANCELLED"
    run_jobs()
    messages = [line["message"] for line in store.logs(services.redis, request_id)]
    assert not any("inference started" in m for m in messages)
    assert store.get(services.redis, request_id).output is None


@pytest.fixture
def body_uri(sample_bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()


def test_a_cancel_while_running_stops_at_the_next_step_and_stores_nothing(
        http, services, run_jobs, sample_bytes, live):
    import httpx

    from tests.sinks import Sink, serve_photo

    sink = Sink().start()
    ids: list[str] = []
    answers: list[httpx.Response] = []

    def cancel_now() -> None:  # the request is running: its worker is downloading the photo
        answers.append(httpx.put(f"{live.url}/v1/requests/{ids[0]}/cancel",
                                 headers=http.headers, timeout=30))

    server, photo_url = serve_photo(sample_bytes, before=cancel_now)
    try:
        _subscribe(http, sink.url)
        ids.append(http.post("/v1/requests", json={"input": {"image_url": photo_url}}
                             ).json()["request_id"])
        root = Path(services.storage.root)
        files_before = set(root.rglob("*"))
        run_jobs()
        assert answers and answers[0].status_code == 202
        record = store.get(services.redis, ids[0])
        assert record.status is Status.CANCELLED and record.output is None
        messages = [line["message"] for line in store.logs(services.redis, ids[0])]
        assert "inference stopped after the download: the request was cancelled" in messages
        assert not any(m.startswith("pose image stored") for m in messages)
        assert not record.local_result  # no callback body was made, none was sent
        assert set(root.rglob("*")) == files_before
        assert [e[0] for e in sorted(_events(sink), key=lambda e: e[1])] == [
            "request.queued", "request.started", "request.cancelled"]
    finally:
        server.shutdown()
        server.server_close()
        sink.stop()


def test_an_input_url_that_answers_404_fails_as_the_callers_input(http, services, run_jobs,
                                                                   live):
    from tests.contract import check

    request_id = http.post("/v1/requests", json={"input": {"image_url": f"{live.url}/nope.jpg"}}
                           ).json()["request_id"]
    run_jobs()
    answer = http.get(f"/v1/requests/{request_id}")
    check(answer, "GET", "/v1/requests/{request_id}")
    error = answer.json()["error"]
    assert answer.json()["status"] == "FAILED"
    assert error["type"] == "input_error" and error["field"] == "input.image_url", error
    assert "404" in error["message"]
