"""Runs the unmodified PyPI fal-client against posehook's fal-hosts listener.

Only the environment points it at posehook (FAL_QUEUE_RUN_HOST, FAL_RUN_HOST, SSL_CERT_FILE,
FAL_KEY = a posehook key), as a fal user would set it. Prints ``HOLD`` and waits for a line on
stdin before the part that needs a request to stay queued (the driver stops its workers),
``RELEASE`` after it, and last one JSON line: check name → "ok" or what went wrong.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import fal_client
import httpx

APP = "fal-ai/dwpose"
PHOTO = open(os.environ["PHOTO"], "rb").read()
DATA_URI = "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()
report: dict[str, str] = {}


def check(name: str, ok: bool, detail: object) -> None:
    report[name] = "ok" if ok else f"FAILED: {detail!r}"


def guarded(name: str, step) -> None:
    try:
        step()
    except Exception as exc:  # noqa: BLE001 - any failure is this check's, reported
        report[name] = f"FAILED: {type(exc).__name__}: {exc}"


def subscribe() -> None:
    updates: list = []
    result = fal_client.subscribe(APP, {"image_url": DATA_URI}, with_logs=True,
                                  on_queue_update=updates.append)
    image = result["image"]
    picture = httpx.get(image["url"])
    final = updates[-1]
    check("subscribe", image["content_type"] == "image/png" and image["width"] == 194
          and isinstance(final, fal_client.Completed) and final.logs
          and picture.status_code == 200, (result, updates))


def submit_status_result() -> None:
    handle = fal_client.submit(APP, {"image_url": DATA_URI})
    status = handle.status(with_logs=True)
    while not isinstance(status, fal_client.Completed):
        status = handle.status(with_logs=True)
    quiet = handle.status()
    result = fal_client.result(APP, handle.request_id)
    check("submit status result", handle.status_url.startswith(
        f"https://{os.environ['FAL_QUEUE_RUN_HOST']}/") and status.logs
        and quiet.logs is None and "inference_time" in status.metrics
        and result["image"]["height"] == 259, (handle, status, quiet, result))


def iter_events() -> None:
    handle = fal_client.submit(APP, {"image_url": DATA_URI})
    events = list(handle.iter_events(with_logs=True, interval=0.05))
    check("iter_events", isinstance(events[-1], fal_client.Completed)
          and handle.get()["image"]["width"] == 194, events)


def run() -> None:
    result = fal_client.run(APP, {"image_url": DATA_URI})
    check("run", result["image"]["content_type"] == "image/png", result)


def cancel() -> None:
    print("HOLD", flush=True)
    sys.stdin.readline()  # the driver runs no jobs now: the request stays queued
    try:
        handle = fal_client.submit(APP, {"image_url": DATA_URI})
        handle.cancel()
        status = handle.status()
        try:
            handle.get()
            outcome: object = "a result"
        except fal_client.client.FalClientHTTPError as error:
            outcome = (error.status_code, error.message)
        try:
            handle.cancel()
            again: object = "accepted"
        except fal_client.client.FalClientHTTPError as error:
            again = (error.status_code, error.error_type)
        late = fal_client.submit(APP, {"image_url": DATA_URI}, start_timeout=1.5)
        time.sleep(1.6)  # still queued (no jobs run) when its own limit passes
        try:
            late.get()
            timed_out: object = "a result"
        except fal_client.client.FalClientHTTPError as error:
            timed_out = (error.status_code, error.error_type,
                         error.response_headers.get("x-fal-request-timeout-type"))
        check("start_timeout", timed_out == (504, "request_timeout", "user"), timed_out)
    finally:
        print("RELEASE", flush=True)
    check("cancel", isinstance(status, fal_client.Completed)
          and outcome == (400, "Request was cancelled") and again == (400, "bad_request"),
          (status, outcome, again))


def errors() -> None:
    try:
        fal_client.run(APP, {"image_url": "ftp://nope/x.jpg"})
        outcome: object = "no error"
    except fal_client.client.FalClientHTTPError as error:
        outcome = (error.status_code, error.error_type, error.message[0]["loc"])
    check("validation error", outcome == (422, "validation_error", ["body", "image_url"]),
          outcome)
    try:
        fal_client.SyncClient(key="not-a-posehook-key").run(APP, {"image_url": DATA_URI})
        refused: object = "accepted"
    except fal_client.client.FalClientHTTPError as error:
        refused = (error.status_code, error.error_type)
    check("a wrong key is refused", refused == (401, "unauthorized"), refused)


for name, step in (("subscribe", subscribe), ("submit status result", submit_status_result),
                   ("iter_events", iter_events), ("run", run), ("cancel", cancel),
                   ("validation error", errors)):
    guarded(name, step)
print(json.dumps(report), flush=True)
