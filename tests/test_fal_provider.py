"""PROVIDER=fal against a stand-in fal on 127.0.0.1 speaking fal's protocol and signatures."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from app.models import Status
from app.store import files
from app.store import requests as store
from app.store.keys import key_for_callbacks_pending
from tests.conftest import SAMPLE
from tests.fal_standin import KEY


@pytest.fixture
def overrides(request, overrides, fal):
    """posehook in front of the stand-in fal (behind a slow door for tests that ask)."""
    settings = {**overrides, "provider": "fal", "fal_key": KEY, "fal_queue_url": fal.url,
                "fal_jwks_url": fal.url + "/.well-known/jwks.json", "fal_jwks_min_refresh": 0.3,
                "reconcile_after": 1, "settle_tries": 3}
    if "impatient" in request.fixturenames:
        settings.update(fal_timeout=1.0, fal_connect_timeout=0.3)
    if "door" in request.fixturenames:
        settings["fal_queue_url"] = request.getfixturevalue("door").url
    return settings


@pytest.fixture
def impatient():
    """posehook waits 1 s for fal's answers and 0.3 s for a connection (see overrides)."""


@pytest.fixture
def door(fal):
    """A door in front of the stand-in fal where connecting times out until it is opened."""
    from tests.slow_door import SlowDoor

    opened = SlowDoor(fal.port)
    yield opened
    opened.stop()


BODY = {"input": {"image_url": "data:image/jpeg;base64,"
                  + base64.b64encode(SAMPLE.read_bytes()).decode()}}


def submit(http) -> str:
    answer = http.post("/v1/requests", json=BODY)
    assert answer.status_code == 202, answer.text
    return answer.json()["request_id"]


def fal_finished(fal, seconds: float = 10) -> None:
    """Wait until the stand-in fal has finished every request it holds (its own work)."""
    deadline = time.monotonic() + seconds
    while any(job.status != "COMPLETED" for job in fal.jobs.values()):
        assert time.monotonic() < deadline, "fal did not finish its requests"
        time.sleep(0.05)


def reconciled(services, run_jobs, swept: dict) -> int:
    """Run the reconcile pass a sweep enqueued; return how many requests it looked at."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    run_jobs()
    job = Job.fetch(swept["reconciled"], connection=services.rq, serializer=JSONSerializer)
    return job.return_value()


def wait_terminal(services, run_jobs, request_id: str, seconds: float = 15) -> store.Request:
    """Run jobs until the request ends (callbacks arrive from the stand-in's thread)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        run_jobs()
        record = store.get(services.redis, request_id)
        if record.status.is_terminal:
            return record
        time.sleep(0.1)
    raise AssertionError(f"still {store.get(services.redis, request_id).status}")


@pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)
def test_happy_path_copies_fals_image_into_our_storage(http, services, run_jobs, fal, live):
    request_id = submit(http)
    record = wait_terminal(services, run_jobs, request_id)
    assert record.status is Status.COMPLETED
    image = record.output["image"]
    assert image["url"].startswith(live.url + "/files/") and (image["width"], image["height"]) == (
        64, 48)
    assert httpx.get(image["url"]).content == fal.result_image()
    copied = files.facts(services.redis, services.storage.key_from_url(image["url"]))
    assert copied["owner"] == f"request:{request_id}"  # it goes with the request record
    assert len(fal.submits) == 1 and len(fal.jobs) == 1
    sent = fal.submits[0]
    assert sent["input"]["image_url"].startswith("data:image/jpeg;base64,")
    assert "posehook_request=" + request_id in sent["webhook"]
    assert record.provider_ref in fal.jobs


def test_error_callback_fails_the_request_with_fals_detail(http, services, run_jobs, fal):
    fal.callback = "error"
    record = wait_terminal(services, run_jobs, submit(http))
    assert record.status is Status.FAILED
    assert record.error["detail"]["detail"][0]["msg"] == "could not load image"


def test_callback_before_the_submit_answer_is_still_matched(http, services, run_jobs, fal):
    """The callback is settled while our submit still waits for fal's answer."""
    from jobs.settle import settle

    outcomes = []

    def settle_now(job) -> None:
        # Nothing has linked fal's id yet: only the webhook URL can name our request.
        assert store.find_by_provider_ref(services.redis, "fal", job.id) is None
        callback_id = services.redis.zrange(key_for_callbacks_pending(), 0, -1)[0]
        outcomes.append(settle(callback_id))

    fal.callback, fal.before_answer = "early", settle_now
    request_id = submit(http)
    run_jobs()
    assert outcomes == ["request.completed"]
    record = store.get(services.redis, request_id)
    assert record.status is Status.COMPLETED and record.provider_ref == next(iter(fal.jobs))


def test_duplicate_callbacks_settle_once(http, services, run_jobs, fal):
    fal.callback = "duplicate"
    request_id = submit(http)
    record = wait_terminal(services, run_jobs, request_id)
    assert record.status is Status.COMPLETED
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert logs.count("settled: completed") == 1


@pytest.mark.parametrize("mode", ["old", "corrupt"])
def test_replayed_or_forged_callbacks_are_refused_and_nothing_is_stored(
        http, services, run_jobs, fal, mode):
    fal.callback = mode
    request_id = submit(http)
    run_jobs()
    job = next(iter(fal.jobs.values()))
    fal_finished(fal)
    assert fal.send_callback(job) == [401]
    assert services.redis.zcard(key_for_callbacks_pending()) == 0
    assert store.get(services.redis, request_id).status is Status.IN_PROGRESS


def test_a_lost_callback_is_reconciled_from_fals_status_api(http, services, run_jobs, fal):
    from jobs.sweep import sweep

    fal.callback = "drop"
    request_id = submit(http)
    run_jobs()
    fal_finished(fal)
    assert reconciled(services, run_jobs, sweep(now=time.time() + 1.5)) == 1  # past its lease
    record = store.get(services.redis, request_id)
    assert record.status is Status.COMPLETED
    assert httpx.get(record.output["image"]["url"]).content == fal.result_image()


def test_a_request_fal_has_forgotten_fails_with_the_reason(http, services, run_jobs, fal):
    from jobs.sweep import sweep

    fal.callback = "drop"
    request_id = submit(http)
    run_jobs()
    fal.jobs.clear()  # fal lost it: its status API answers 404
    assert reconciled(services, run_jobs, sweep(now=time.time() + 1.5)) == 1
    record = store.get(services.redis, request_id)
    assert record.status is Status.FAILED
    assert "404" in record.error["message"] and "does not know" in json.dumps(record.error)


def test_rotated_key_is_accepted_after_one_jwks_refetch(http, services, run_jobs, fal):
    assert wait_terminal(services, run_jobs, submit(http)).status is Status.COMPLETED
    assert fal.jwks_fetches == 1
    fal.rotate()
    time.sleep(0.4)  # the re-fetch is rate-limited
    assert wait_terminal(services, run_jobs, submit(http)).status is Status.COMPLETED
    assert fal.jwks_fetches == 2


def test_unreachable_jwks_fails_closed(http, services, run_jobs, fal):
    fal.jwks_up = False
    fal.callback = "drop"
    request_id = submit(http)
    run_jobs()
    job = next(iter(fal.jobs.values()))
    fal.callback = "send"
    assert fal.send_callback(job) == [401]
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.IN_PROGRESS


def test_429_and_500_on_submit_are_retried_into_one_fal_request(http, services, run_jobs, fal):
    fal.refuse = [429, 500]
    record = wait_terminal(services, run_jobs, submit(http))
    assert record.status is Status.COMPLETED
    assert len(fal.submits) == 3 and len(fal.jobs) == 1


def test_a_retried_submit_job_never_sends_twice(http, services, run_jobs, fal):
    from jobs.submit import submit as submit_job

    fal.callback = "drop"
    request_id = submit(http)
    run_jobs()
    store.transition(services.redis, request_id, Status.IN_QUEUE, (Status.IN_PROGRESS,))
    store.update(services.redis, request_id, provider_ref="")
    assert submit_job(request_id) == "awaiting"
    assert len(fal.submits) == 1


def test_cancel_calls_fal_and_a_finished_request_answers_as_fal(http, services, run_jobs, fal):
    fal.delay = 30
    request_id = submit(http)
    run_jobs()
    answer = http.put(f"/v1/requests/{request_id}/cancel")
    assert answer.status_code == 202
    assert next(iter(fal.jobs.values())).cancelled is True
    fal.delay = 0.1
    done = submit(http)
    run_jobs()
    job = fal.jobs[store.get(services.redis, done).provider_ref]
    job.status = "COMPLETED"  # fal finished; its callback is still on the way
    answer = http.put(f"/v1/requests/{done}/cancel")
    assert answer.status_code == 400 and "fal already finished" in answer.json()["message"]


def test_a_cancel_fal_cannot_take_now_is_done_here_and_told_to_fal_later(
        http, services, run_jobs, fal):
    fal.delay = 30
    request_id = submit(http)
    run_jobs()
    fal.down = True
    answer = http.put(f"/v1/requests/{request_id}/cancel")
    assert answer.status_code == 202
    assert store.get(services.redis, request_id).status is Status.CANCELLED
    job = next(iter(fal.jobs.values()))
    assert job.cancelled is False
    fal.down = False
    run_jobs()  # the retry job tells fal
    assert job.cancelled is True
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert "fal answered the cancel with 202" in logs


def test_a_submit_whose_answer_is_lost_waits_for_fals_callback(impatient, http, services,
                                                                run_jobs, fal):
    fal.hold, fal.delay = 1.5, 2.5  # fal takes it, answers after our 1 s, calls back later
    request_id = submit(http)
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.IN_QUEUE  # not FAILED
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert "fal's answer was lost (ReadTimeout); waiting for fal's callback" in logs
    record = wait_terminal(services, run_jobs, request_id)
    assert record.status is Status.COMPLETED and record.provider_ref == next(iter(fal.jobs))
    assert len(fal.submits) == 1


def test_a_lost_submit_answer_with_no_callback_fails_with_the_reason(impatient, http, services,
                                                                      run_jobs, fal):
    from jobs.sweep import sweep

    fal.hold, fal.callback = 1.5, "drop"
    request_id = submit(http)
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.IN_QUEUE
    assert reconciled(services, run_jobs, sweep(now=time.time() + 1.2)) == 1
    record = store.get(services.redis, request_id)
    assert record.status is Status.FAILED and record.error["type"] == "provider_lost"
    assert record.error["message"] == ("fal's answer was lost (ReadTimeout) and no callback "
                                       "came in 1 s")
    assert len(fal.submits) == 1


def test_a_connect_timeout_is_retried_as_it_never_reached_fal(impatient, door, http, services,
                                                              run_jobs, fal):
    import logging
    import threading

    timed_out = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "ConnectTimeout" in record.getMessage():
                timed_out.set()

    watch = Watch()
    logging.getLogger("app.providers.fal").addHandler(watch)
    # The door opens only once our first connect has timed out.
    threading.Thread(target=lambda: timed_out.wait(20) and door.open(), daemon=True).start()
    try:
        record = wait_terminal(services, run_jobs, submit(http))
    finally:
        logging.getLogger("app.providers.fal").removeHandler(watch)
    assert record.status is Status.COMPLETED
    assert timed_out.is_set() and door.opened.is_set()
    assert len(fal.submits) == 1 and len(fal.jobs) == 1


def test_a_gateway_error_after_sending_is_not_sent_again(http, services, run_jobs, fal):
    fal.refuse = [504]  # fal's gateway gave up waiting: fal may have the request all the same
    request_id = submit(http)
    run_jobs()
    assert len(fal.submits) == 1
    assert store.get(services.redis, request_id).status is Status.IN_QUEUE
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert "fal's gateway answered 504; waiting for fal's callback" in logs


def test_an_output_that_cannot_be_copied_does_not_stop_reconciliation(http, services, run_jobs,
                                                                      fal):
    from jobs.reconcile import reconcile

    fal.callback, fal.output_gone = "drop", True
    poisoned = submit(http)
    run_jobs()
    fal.output_gone = False
    healthy = submit(http)
    run_jobs()
    for job in fal.jobs.values():
        job.status = "COMPLETED"  # fal finished both; their callbacks were lost
    now = time.time() + 2  # past both leases; the poisoned one's ends first
    assert reconcile(services, now) == 2
    assert store.get(services.redis, healthy).status is Status.COMPLETED
    assert store.get(services.redis, poisoned).status is Status.IN_PROGRESS  # asked again later
    assert reconcile(services, now + 10) == 0  # its lease was pushed back
    reconcile(services, now + 100)
    reconcile(services, now + 200)  # the third try
    record = store.get(services.redis, poisoned)
    assert record.status is Status.FAILED and record.error["type"] == "settle_failed"
    assert record.error["message"] == ("the result could not be settled after 3 tries: "
                                       "payload.image.url: the server answered 404")


def test_a_callback_whose_output_cannot_be_copied_fails_after_its_tries(http, services,
                                                                        run_jobs, fal):
    from app.errors import FetchError
    from jobs.settle import settle

    fal.output_gone = True
    request_id = submit(http)
    run_jobs()
    deadline = time.time() + 10
    while not services.redis.zcard(key_for_callbacks_pending()):
        assert time.time() < deadline, "no callback came"
        time.sleep(0.05)
    [callback_id] = services.redis.zrange(key_for_callbacks_pending(), 0, -1)
    # As RQ's retries and the sweeper would run it (a worker may have had a go already).
    outcome = None
    for _ in range(5):
        try:
            outcome = settle(callback_id)
            break
        except FetchError:
            assert store.get(services.redis, request_id).status is Status.IN_PROGRESS
    assert outcome in ("gave up", "already settled")
    record = store.get(services.redis, request_id)
    assert record.status is Status.FAILED
    assert "after 3 tries: payload.image.url: the server answered 404" in record.error["message"]
    assert settle(callback_id) == "already settled"


def test_a_cancel_while_the_submit_is_in_flight_is_sent_to_fal(http, services, run_jobs, fal):
    import threading

    fal.hold, fal.delay = 1.0, 30  # fal has the job while its answer is still on the way
    request_id = submit(http)
    answers = []

    def cancel_when_fal_has_it() -> None:
        deadline = time.time() + 10
        while not fal.jobs and time.time() < deadline:
            time.sleep(0.02)
        answers.append(http.put(f"/v1/requests/{request_id}/cancel").status_code)

    canceller = threading.Thread(target=cancel_when_fal_has_it)
    canceller.start()
    run_jobs()  # the submit links fal's id after the cancel; the cancel job then runs
    canceller.join()
    assert answers == [202]
    assert store.get(services.redis, request_id).status is Status.CANCELLED
    job = next(iter(fal.jobs.values()))
    assert job.cancelled is True
    logs = [line["message"] for line in store.logs(services.redis, request_id)]
    assert "cancelled while being submitted; telling fal" in logs
    assert "fal answered the cancel with 202" in logs


def test_a_cancel_that_read_the_record_just_before_the_link_is_sent_to_fal(
        app, http, services, run_jobs, fal):
    from app.lifecycle import cancel

    fal.delay = 30
    request_id = submit(http)
    before_link = store.get(services.redis, request_id)  # what the cancel read: no fal id yet
    run_jobs()  # the submit links fal's id and marks the request running
    with app.app_context():
        cancel(services, before_link)  # its change comes after the link
    run_jobs()
    assert store.get(services.redis, request_id).status is Status.CANCELLED
    assert next(iter(fal.jobs.values())).cancelled is True
