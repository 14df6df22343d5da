"""Chaos: requests under a subscriber while every kind of process is killed once, SIGKILL.

The stack is the real ``make run`` (every Procfile process under ``app.supervise``, so a
killed one starts again) with its embedded Redis on a port and a data directory of its own,
append-only file on with ``appendfsync everysec``: make run's own setting, the one an
operator runs. A SIGKILL ends the Redis process, not the machine: what Redis wrote before
it answered is in the kernel's page cache and reaches the file anyway, so ``always`` would
only add safety against a power cut, which no test here can make.

While a client submits N requests from three threads (each with an Idempotency-Key and
``Prefer: wait=3``, sending again on a 503, a 429 or a broken connection, as a client
should), the test kills, one after the other and each once the previous kind is back: the
inference worker in the middle of a job, the rq worker of submit and settle, the delivery
worker, the gunicorn worker holding the most client connections, and redis-server.

Then: every request ends, every request's terminal event reached the subscriber under one
webhook-id (a repeat of the same webhook-id counts once, as a subscriber dedupes), and
every request id the client was given is readable. The sweeper runs every 2 s and the
leases and delivery timeouts are short (settings), so healing fits in the test's time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import httpx
import psutil
import pytest
from redis import Redis

from app.store.keys import key_for_leases
from tests.conftest import SAMPLE
from tests.make_run import Run, children, running, supervised, wait_for
from tests.sinks import Sink, serve_photo

N = 30
THREADS = 3
TERMINAL = ("request.completed", "request.failed", "request.cancelled")
SETTINGS = {
    "POSEHOOK_SWEEP_INTERVAL": "2",
    "POSEHOOK_JOB_TIMEOUT": "20",
    "POSEHOOK_LEASE_GRACE": "5",
    "POSEHOOK_DELIVERY_TIMEOUT": "3",
    "POSEHOOK_DELIVERY_CONNECT_TIMEOUT": "2",
    "POSEHOOK_DELIVERY_SCHEDULE": "0,1,2,3,5,8,13",
    "POSEHOOK_WEB_WORKERS": "2",
}


@pytest.fixture
def run(tmp_path):
    """``make run`` with the short clocks above, ready; everything of it killed after."""
    with running(tmp_path, SETTINGS, seconds=120) as started:
        yield started


class Client:
    """Submits N requests from THREADS threads, each again with its key until it is taken.

    Each asks ``Prefer: wait=3``, so requests are held in gunicorn when a worker is killed.
    """

    def __init__(self, url: str, key: str, image_url: str) -> None:
        self.url, self.key, self.image_url = url, key, image_url
        self.accepted: dict[str, str] = {}  # idempotency key -> request id
        self.seen: list[tuple[float, str, str]] = []  # (time, idempotency key, answer)
        self.unexpected: list[str] = []
        self.threads = [threading.Thread(target=self._submit_all, args=(t,), daemon=True)
                        for t in range(THREADS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, seconds: float) -> bool:
        """Wait for every submit to be taken (or given up); True when all threads ended."""
        deadline = time.monotonic() + seconds
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def _submit_all(self, thread: int) -> None:
        with httpx.Client(base_url=self.url, timeout=15,
                          headers={"Authorization": f"Key {self.key}"}) as http:
            for i in range(N // THREADS):
                self._submit(http, f"chaos-{thread}-{i}")
                time.sleep(0.5)

    def _submit(self, http: httpx.Client, idempotency_key: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = http.post("/v1/requests", json={"input": {"image_url": self.image_url}},
                                   headers={"Idempotency-Key": idempotency_key,
                                            "Prefer": "wait=3"})
                seen = str(answer.status_code)
            except httpx.HTTPError as exc:
                answer, seen = None, type(exc).__name__
            self.seen.append((time.time(), idempotency_key, seen))
            if answer is not None and answer.status_code in (200, 202):
                self.accepted[idempotency_key] = answer.json()["request_id"]
                return
            if answer is not None and answer.status_code not in (429, 502, 503):
                self.unexpected.append(f"{answer.status_code} {answer.text}")
                return
            time.sleep(float(answer.headers.get("Retry-After", 1)) if answer else 0.5)


def _busiest(workers: list[int], port: int) -> int:
    """The gunicorn worker holding the most client connections on ``port`` now."""
    return max(workers, key=lambda pid: sum(
        c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        for c in psutil.Process(pid).net_connections()))


def _kill_and_wait_back(run: Run, name: str, pid: int, back) -> float:
    """SIGKILL ``pid`` (a process of Procfile entry ``name``); return once ``back()``."""
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    wait_for(back, 90, f"{name} back after its kill", run.make, run.log)
    return killed


def _replaced(run: Run, name: str, before: int):
    return lambda: children(run.started_pids()[name])[:1] not in ([], [before])


def _engines_loaded(run: Run) -> int:
    """How many times an inference worker has said it loaded its engine (jobs.worker)."""
    return len(re.findall(r"engine \S+ \S+ loaded", run.output()))


def _redis_answers(port: int) -> bool:
    try:
        return bool(Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - still starting
        return False


def test_every_request_ends_and_is_announced_once_while_each_process_kind_is_killed(run):
    sink = Sink().start()
    photos, photo_url = serve_photo(SAMPLE.read_bytes(), delay=0.7)  # a job lasts ~1 s
    redis = Redis(host="127.0.0.1", port=run.redis_port, decode_responses=True)
    try:
        key = run.dev_key()
        made = httpx.post(run.url + "/v1/subscriptions", headers={"Authorization": f"Key {key}"},
                          json={"url": sink.url, "events": list(TERMINAL)}, timeout=10)
        assert made.status_code == 201, made.text
        client = Client(run.url, key, photo_url)
        started = time.monotonic()
        client.start()
        kills: dict[str, float] = {}

        # The inference worker while a request is running; back once its engine is loaded.
        wait_for(lambda: redis.zcard(key_for_leases()) > 0, 60, "a request running",
                 run.make, run.log)
        running_then = set(redis.zrange(key_for_leases(), 0, -1))
        loaded = _engines_loaded(run)
        kills["inference"] = _kill_and_wait_back(
            run, "inference", supervised(run, "inference"),
            lambda: _engines_loaded(run) > loaded)
        for name in ("worker", "delivery"):  # the rq workers: submit + settle, deliveries
            before = supervised(run, name)
            kills[name] = _kill_and_wait_back(run, name, before, _replaced(run, name, before))
            time.sleep(2)  # let it take work again before the next kill
        master = supervised(run, "web")  # a gunicorn worker: its master starts another
        worker = _busiest(children(master), int(run.url.rsplit(":", 1)[1]))
        kills["web worker"] = _kill_and_wait_back(
            run, "web", worker, lambda: len(set(children(master)) - {worker}) == 2)
        time.sleep(2)
        # Redis itself: the redis-server the embedded-Redis process runs.
        server = children(supervised(run, "redis"))[0]
        redis.close()
        kills["redis"] = _kill_and_wait_back(run, "redis", server,
                                             lambda: _redis_answers(run.redis_port))
        redis_back = time.time()

        assert client.join(150) and not client.unexpected, (client.unexpected, client.seen)
        ids = set(client.accepted.values())
        assert len(ids) == N, client.seen  # one request per idempotency key, none lost

        def announced() -> dict[str, set[str]]:
            ids_of: dict[str, set[str]] = {}
            for got in list(sink.received):
                event = json.loads(got.body)
                if event["type"] in TERMINAL:
                    ids_of.setdefault(event["data"]["request_id"], set()).add(
                        got.headers["webhook-id"])
            return ids_of

        wait_for(lambda: ids <= set(announced()), 120, "every terminal event delivered",
                 run.make, run.log)
        took = time.monotonic() - started
        ids_of = announced()
        assert {i: w for i, w in ids_of.items() if len(w) != 1} == {}  # once per request
        assert set(ids_of) == ids  # and none for a request the client never made
        statuses = {}
        with httpx.Client(base_url=run.url, headers={"Authorization": f"Key {key}"},
                          timeout=10) as http:
            # A submit sent again after a lost answer made no second request.
            listed = http.get("/v1/requests", params={"limit": 100}).json()["requests"]
            assert sorted(r["request_id"] for r in listed) == sorted(ids)
            for request_id in ids:  # every record is still there, and has ended
                answer = http.get(f"/v1/requests/{request_id}")
                assert answer.status_code == 200, answer.text
                statuses[request_id] = answer.json()["status"]
            # The request the inference kill interrupted was run again, from its lease.
            logs = [[line["message"] for line in http.get(
                f"/v1/requests/{request_id}/status", params={"logs": 1}).json()["logs"]]
                for request_id in running_then]
        assert set(statuses.values()) <= {"COMPLETED", "FAILED", "CANCELLED"}, statuses
        assert all("the inference worker was lost; retrying" in x for x in logs), logs
        assert run.make.poll() is None  # nothing of this stopped the stack
        outage = [(round(t - kills["redis"], 1), seen) for t, _, seen in client.seen
                  if kills["redis"] - 1 <= t <= redis_back + 5]
        web = [(round(t - kills["web worker"], 1), seen) for t, _, seen in client.seen
               if kills["web worker"] - 1 <= t <= kills["web worker"] + 3]
        print(f"chaos: {N} requests, {took:.0f} s; statuses "
              f"{sorted((s, list(statuses.values()).count(s)) for s in set(statuses.values()))};"
              f" deliveries received {len(sink.received)} ("
              f"{len({g.headers['webhook-id'] for g in sink.received})} webhook-ids);"
              f" the client around the web worker's kill (s after it, answer): {web}, "
              f"around the Redis kill: {outage}")
    finally:
        sink.stop()
        photos.shutdown()
        photos.server_close()
