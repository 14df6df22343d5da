"""The event pipeline against its baselines: fan-out, ingress, overhead, end to end, lists.

Run from the repository root: ``.venv/bin/python -m bench.pipeline`` (about 6 minutes;
``--quick`` runs every part briefly). Each posehook figure is measured in the same run as its
baseline, ours and baseline rounds alternating, and the median of the rounds is printed as
one Markdown table for docs/benchmarks.md. Nothing here is a test: numbers are written down,
never asserted (``tests/test_bench_pipeline.py`` checks only that every row gets a number).

Every service process is started from its ``Procfile`` line, exactly as written there, on a
Redis database of the bench's own (``REDIS_URL``, else 127.0.0.1:6379, else an embedded
server; see ``tests/redis_server.py``), and all traffic stays on 127.0.0.1:

1. fan-out: deliveries/s of the Procfile's RQ workers (1 and N processes of each line serving
   the ``delivery`` queue) to a local sink answering 204, beside a raw httpx POST loop (1 and N
   processes) sending the same body and headers to that sink;
2. ingress: verified and persisted ``POST /webhooks/fal`` callbacks/s under the ``web`` line's
   gunicorn, beside a bare Flask route under the same gunicorn command, loaded from another
   process by keep-alive httpx clients in threads;
3. overhead: POST /v1/requests until the subscriber has ``request.completed``, minus the
   request's own ``metrics.inference_time``, one client and 8 clients;
4. end to end: requests/s with one inference worker, beside ``app.engine.render`` alone;
5. lists: ``GET /v1/requests?status=COMPLETED&limit=20`` with none matching, at three sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "tests" / "data" / "pose_sample.jpg"
SUBSCRIPTIONS = 10
"""Endpoints per event in the fan-out: each event becomes this many deliveries."""
MP = multiprocessing.get_context("spawn")  # children never inherit the bench's threads

# -- the sink: its own process, so its work never shares the bench's GIL ---------------------


def _sink_main(ports: Any, events: Any) -> None:
    """Serve on 127.0.0.1 until terminated: POST answers 204 at once.

    ``/events``: the time each ``request.completed`` arrived goes on ``events`` (with its
    request id); any other path is counted (first and last arrival, the last body and headers).
    ``GET /stats`` reports the count, ``GET /reset`` reports and starts it again.
    """
    import http.server

    lock = threading.Lock()
    state: dict[str, Any] = {"count": 0, "first": 0.0, "last": 0.0, "headers": {}, "body": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, for whoever keeps connections

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            if self.path.startswith("/events"):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    event = json.loads(body)
                    if event["type"] == "request.completed":
                        events.put((event["data"]["request_id"], now))
            else:
                with lock:
                    state["count"] += 1
                    state["first"] = state["first"] or now
                    state["last"] = now
                    state["headers"], state["body"] = self.headers, body
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            with lock:
                answer = json.dumps({"count": state["count"], "first": state["first"],
                                     "last": state["last"], "body": state["body"].decode(),
                                     "headers": dict(state["headers"].items())}).encode()
                if self.path == "/reset":
                    state.update(count=0, first=0.0, last=0.0)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ports.put(server.server_address[1])
    server.serve_forever()


class Sink:
    """The sink process, and the completed events it saw, by request id."""

    def __init__(self) -> None:
        import httpx

        ports, self.events = MP.Queue(), MP.Queue()
        self.proc = MP.Process(target=_sink_main, args=(ports, self.events), daemon=True)
        self.proc.start()
        self.url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        while True:
            request_id, at = self.events.get()
            with self.changed:
                self.seen[request_id] = at
                self.changed.notify_all()

    def completed_at(self, request_id: str, timeout: float = 60) -> float:
        """Return when the subscriber had ``request.completed`` of one request."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while request_id not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no request.completed for {request_id} in {timeout} s")
                self.changed.wait(left)
            return self.seen[request_id]

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Return the count of other POSTs (and the last one's body and headers)."""
        return self.http.get("/reset" if reset else "/stats").json()

    def stop(self) -> None:
        """End the sink process."""
        self.proc.terminate()
        self.proc.join(10)


def sink_rate(stats: dict[str, Any]) -> float:
    """Return POSTs/s between the first and the last the sink got (0 for fewer than 2)."""
    span = stats["last"] - stats["first"]
    return (stats["count"] - 1) / span if stats["count"] > 1 and span > 0 else 0.0


# -- the service's processes, from the Procfile ------------------------------------------------


def procfile_lines() -> dict[str, str]:
    """Return the Procfile's commands by process name, in its order."""
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            lines[name.strip()] = command.strip()
    return lines


def procfile(name: str) -> str:
    """Return the command of one Procfile line."""
    try:
        return procfile_lines()[name]
    except KeyError:
        raise KeyError(f"the Procfile has no {name!r} line") from None


def fast_workers() -> tuple[list[str], list[str]]:
    """Return the Procfile's RQ worker lines (every fast queue), and those serving ``delivery``.

    Read at each run, so a new worker layout in the Procfile is what gets measured.
    """
    rq_lines = [name for name, command in procfile_lines().items() if "rq worker" in command]
    delivering = [name for name in rq_lines
                  if re.search(r"(?<![\w-])delivery(?![\w-])", procfile(name))]
    if not delivering:
        raise RuntimeError("no Procfile line runs an rq worker on the delivery queue")
    return rq_lines, delivering


class Processes:
    """Procfile commands run by ``sh -c`` on one Redis database, each in its own group."""

    def __init__(self, redis_url: str, work: Path) -> None:
        self.work, self.redis_url = work, redis_url
        self.procs: dict[str, subprocess.Popen] = {}

    def env(self, port: int) -> dict[str, str]:
        """Return the environment of a process whose web is (or would be) on ``port``."""
        return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "REDIS_URL": self.redis_url, "POSEHOOK_BIND": f"127.0.0.1:{port}",
                "POSEHOOK_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                "POSEHOOK_DATA_DIR": str(self.work / "data"),
                "POSEHOOK_ALLOWED_CIDRS": "127.0.0.0/8", "POSEHOOK_ENGINE": "mediapipe",
                "POSEHOOK_FAL_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
                "POSEHOOK_RATE_PER_KEY": "0",  # a load test, not a misbehaving caller
                "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

    def start(self, name: str, command: str, port: int = 0) -> None:
        """Start ``command`` (a Procfile line) as ``name``; its output goes to a log file."""
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(["sh", "-c", command], cwd=ROOT, env=self.env(port),
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()

    def log(self, name: str) -> str:
        """Return the tail of what one process printed."""
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def check(self, name: str) -> None:
        """Raise if the process has exited."""
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited:\n{self.log(name)}")

    def wait_web(self, name: str, port: int, timeout: float = 90) -> None:
        """Wait until the web process answers /healthz."""
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return
            self.check(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer in {timeout} s:\n{self.log(name)}")
            time.sleep(0.1)

    def stop(self, *names: str) -> None:
        """Stop some processes (all without names): SIGTERM to the group, SIGKILL after 20 s."""
        chosen = names or tuple(self.procs)
        for name in chosen:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.procs[name].pid, signal.SIGTERM)
        for name in chosen:
            proc = self.procs.pop(name)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    from tests.redis_server import free_port as free

    return free()


# -- one bench run: the database, the sink, the parts ----------------------------------------


class Bench:
    """What every part shares: the claimed database, the sink and the options."""

    def __init__(self, redis_url: str, work: Path, sink: Sink, args: argparse.Namespace) -> None:
        self.redis_url, self.work, self.sink, self.args = redis_url, work, sink, args

    def fresh(self) -> Any:
        """Empty the database (still claimed) and return new Services on it."""
        from redis import Redis

        from app.config import load_settings
        from app.services import Services
        from tests import redis_server

        Redis.from_url(self.redis_url).flushdb()
        Redis.from_url(self.redis_url).set(redis_server.LOCK, str(os.getpid()), ex=3 * 3600)
        return Services.from_settings(load_settings(
            {"redis_url": self.redis_url, "allowed_cidrs": ["127.0.0.0/8"],
             "data_dir": str(self.work / "data")}, environ={}))

    def processes(self) -> Processes:
        """Return a process group runner on the bench's database."""
        return Processes(self.redis_url, self.work)


def rounds_of(count: int, *steps: Callable[[], float]) -> list[list[float]]:
    """Run the steps one after another, ``count`` times; return each step's results."""
    results: list[list[float]] = [[] for _ in steps]
    for _ in range(count):
        for index, step in enumerate(steps):
            results[index].append(step())
    return results


# -- 1. fan-out -----------------------------------------------------------------------------


def _raw_loop(url: str, headers: dict[str, str], body: bytes, seconds: float, limit: int,
              ready: Any, go: Any, done: Any) -> None:
    """POST ``body`` in a loop on one keep-alive client until ``seconds`` or ``limit``."""
    import httpx

    with httpx.Client(timeout=10, trust_env=False) as client:
        client.post(url, content=body, headers=headers)  # the connection, before the clock
        ready.put(1)
        go.wait(60)
        sent, end = 0, time.monotonic() + seconds
        while sent < limit and time.monotonic() < end:
            client.post(url, content=body, headers=headers)
            sent += 1
    done.put(sent)


def raw_fanout(bench: Bench, processes: int, headers: dict[str, str], body: bytes) -> float:
    """Return POSTs/s the sink gets from ``processes`` raw httpx loops."""
    ready, done, go = MP.Queue(), MP.Queue(), MP.Event()
    args = bench.args
    loops = [MP.Process(target=_raw_loop, args=(bench.sink.url + "/hook", headers, body,
                                                args.raw_seconds, 50_000, ready, go, done))
             for _ in range(processes)]
    for loop in loops:
        loop.start()
    for _ in loops:
        ready.get(timeout=60)
    bench.sink.stats(reset=True)
    go.set()
    for _ in loops:
        done.get(timeout=args.raw_seconds + 60)
    for loop in loops:
        loop.join(10)
    return sink_rate(bench.sink.stats())


def our_fanout(bench: Bench, svc: Any, key_id: str, workers: int) -> float:
    """Return deliveries/s of the Procfile's workers draining a backlog of deliveries.

    Every RQ worker line of the Procfile runs once, and those serving ``delivery``
    ``workers`` times.

    The deliveries are made and queued first (``events.emit`` of ``request.completed`` to
    SUBSCRIPTIONS endpoints per request); the clock runs at the sink, from the first delivery
    to the last, so the workers' start is not counted.
    """
    from app import events, queues
    from app.store import requests as store

    args = bench.args
    for name in queues.FAST_QUEUES:
        queues.queue(svc.rq, name).empty()
    for _ in range(math.ceil(args.deliveries / SUBSCRIPTIONS)):
        record, _ = store.create(svc.redis, key_id=key_id, provider="local",
                                 input={"image_url": "http://127.0.0.1:9/photo.jpg"})
        events.emit(svc, record.id, "request.completed")
    total = math.ceil(args.deliveries / SUBSCRIPTIONS) * SUBSCRIPTIONS
    bench.sink.stats(reset=True)
    procs = bench.processes()
    rq_lines, delivering = fast_workers()
    names = [f"{line}-{index}" for line in rq_lines
             for index in range(workers if line in delivering else 1)]
    for name in names:
        procs.start(name, procfile(name.rsplit("-", 1)[0]))
    try:
        started, first = time.monotonic(), None
        while True:
            stats = bench.sink.stats()
            if stats["count"] and first is None:
                first = time.monotonic()
            if stats["count"] >= total:
                break
            if first is not None and time.monotonic() - first > args.fanout_seconds:
                break
            if time.monotonic() - started > args.fanout_seconds + 90:
                raise RuntimeError("no delivery arrived:\n" + procs.log(names[0]))
            for name in names:
                procs.check(name)
            time.sleep(0.1)
    finally:
        procs.stop()
    return sink_rate(bench.sink.stats())


def fanout(bench: Bench) -> list[list[str]]:
    """Rows: 1 and N Procfile workers against 1 and N raw loops."""
    from app.store import apikeys, subscriptions

    svc = bench.fresh()
    key_id = apikeys.create(svc.redis, "bench-fanout")[0].id
    for _ in range(SUBSCRIPTIONS):
        subscriptions.create(svc.redis, key_id, bench.sink.url + "/hook", ["request.completed"])
    counts = sorted({1, bench.args.workers})
    sample: dict[str, Any] = {}

    def ours(workers: int) -> Callable[[], float]:
        def step() -> float:
            rate = our_fanout(bench, svc, key_id, workers)
            sample.update(bench.sink.stats())
            return rate
        return step

    def raw(processes: int) -> Callable[[], float]:
        def step() -> float:
            headers = {k: v for k, v in sample["headers"].items()
                       if k.lower() not in ("host", "content-length", "connection")}
            return raw_fanout(bench, processes, headers, sample["body"].encode())
        return step

    steps = [step for n in counts for step in (ours(n), raw(n))]
    results = rounds_of(bench.args.rounds, *steps)
    rows = []
    for index, n in enumerate(counts):
        mine, base = (statistics.median(x) for x in results[2 * index:2 * index + 2])
        lines = ", ".join(f"`{line}`" for line in fast_workers()[1])
        rows.append([f"fan-out, {n} process{'es' if n > 1 else ''} of the Procfile's {lines}, "
                     "deliveries/s to a local sink",
                     f"{mine:,.1f}", f"raw httpx POST loop, {n} process{'es' if n > 1 else ''}, "
                     f"same body and headers: {base:,.0f}", ratio(mine, base), "≥ 0.5",
                     met(mine / base >= 0.5 if base else None)])
    return rows


# -- 2. ingress ----------------------------------------------------------------------------


def _load(url: str, requests: list[tuple[bytes, dict[str, str]]], threads: int,
          seconds: float, cycle: bool) -> dict[str, Any]:
    """POST ``requests`` from keep-alive clients in threads for ``seconds``; count answers.

    ``cycle``: start the list again when it runs out (else stop there).
    """
    import httpx

    clients = [httpx.Client(timeout=30, trust_env=False) for _ in range(threads)]
    for client in clients:
        client.get(url.rsplit("/webhooks", 1)[0] + "/healthz")  # keep-alive, before the clock
    lock, position, outcome = threading.Lock(), [0], {"ok": 0, "bad": 0}
    end = time.monotonic() + seconds

    def run(client: httpx.Client) -> None:
        ok = bad = 0
        while time.monotonic() < end:
            with lock:
                index = position[0]
                position[0] += 1
            if index >= len(requests) and not cycle:
                break
            body, headers = requests[index % len(requests)]
            if client.post(url, content=body, headers=headers).status_code == 200:
                ok += 1
            else:
                bad += 1
        with lock:
            outcome["ok"] += ok
            outcome["bad"] += bad

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, clients))
    outcome["seconds"] = time.monotonic() - started
    for client in clients:
        client.close()
    return outcome


def _load_main(conn: Any) -> None:
    """Run the load jobs sent over ``conn`` (``_load``'s arguments) until it sends None."""
    while (job := conn.recv()) is not None:
        conn.send(_load(*job))


def signed_callbacks(svc: Any, count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Return ``count`` distinct callbacks signed as our inference worker signs them."""
    import secrets

    from app import fal_protocol
    from app.signing import fal as fal_signing
    from jobs.infer import LOCAL_USER_ID

    output = {"image": {"url": "http://127.0.0.1:8000/files/0123456789abcdef/pose.png",
                        "content_type": "image/png", "file_name": "pose.png",
                        "file_size": 23456, "width": 194, "height": 259}}
    made = []
    for _ in range(count):
        request_id = secrets.token_hex(16)
        body = fal_protocol.callback_body(request_id, output)
        headers = fal_signing.sign(svc.signing_key, request_id, LOCAL_USER_ID, body)
        headers["Content-Type"] = "application/json"
        made.append((body, headers))
    return made


def ingress(bench: Bench) -> list[list[str]]:
    """Row: callbacks/s verified and stored by the ingress against a bare Flask route."""
    from app.store.keys import key_for_callbacks_pending

    args = bench.args
    svc = bench.fresh()
    svc.signing_key  # noqa: B018 - made now, so the web and the bench share it
    web = procfile("web")
    if web.count("wsgi:app") != 1:
        raise RuntimeError(f"the Procfile's web line does not name wsgi:app once: {web}")
    ports = {"ours": free_port(), "bare": free_port()}
    procs = bench.processes()
    procs.start("ingress-web", web, ports["ours"])
    procs.start("ingress-bare", web.replace("wsgi:app", "bench.bare:app"), ports["bare"])
    mine, theirs = MP.Pipe()
    loader = MP.Process(target=_load_main, args=(theirs,), daemon=True)
    loader.start()
    try:
        procs.wait_web("ingress-web", ports["ours"])
        procs.wait_web("ingress-bare", ports["bare"])
        count = max(20, int(args.ingress_seconds * 3000))

        def run(which: str, cycle: bool) -> dict[str, Any]:
            calls = signed_callbacks(svc, count)
            mine.send((f"http://127.0.0.1:{ports[which]}/webhooks/fal", calls, args.threads,
                       args.ingress_seconds, cycle))
            return mine.recv()

        def ours() -> float:
            before = svc.redis.zcard(key_for_callbacks_pending())
            outcome = run("ours", False)
            stored = svc.redis.zcard(key_for_callbacks_pending()) - before
            if outcome["bad"] or stored != outcome["ok"]:
                raise RuntimeError(f"ingress: {outcome}, {stored} stored:\n"
                                   + procs.log("ingress-web"))
            return stored / outcome["seconds"]

        def bare() -> float:
            outcome = run("bare", True)
            return outcome["ok"] / outcome["seconds"]

        results = rounds_of(args.rounds, ours, bare)
    finally:
        mine.send(None)
        loader.join(10)
        procs.stop()
    mine_rate, base = (statistics.median(x) for x in results)
    return [["ingress `POST /webhooks/fal`, verified + persisted callbacks/s (Procfile `web`)",
             f"{mine_rate:,.0f}", f"a bare Flask route under the same gunicorn: {base:,.0f}",
             ratio(mine_rate, base), "≥ 0.5", met(mine_rate / base >= 0.5 if base else None)]]


# -- 3, 4, 5: the whole service --------------------------------------------------------------


@contextlib.contextmanager
def service(bench: Bench) -> Iterator[tuple[Any, Any, Any]]:
    """Run web, the RQ workers and inference from the Procfile; yield (Services, client, key).

    Not cron (the sweeper's clock) and not redis: the bench brings its own database.
    """
    import httpx

    from app.store import apikeys, subscriptions

    svc = bench.fresh()
    port = free_port()
    procs = bench.processes()
    try:
        for name in ("web", *fast_workers()[0], "inference"):
            procs.start(name, procfile(name), port)
        procs.wait_web("web", port)
        record, key = apikeys.create(svc.redis, "bench")
        subscriptions.create(svc.redis, record.id, bench.sink.url + "/events",
                             ["request.completed"])
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90, trust_env=False,
                          headers={"Authorization": f"Key {key}"}) as client:
            for _ in range(2):  # every process warm: engine loaded, modules imported
                answer = client.post("/v1/requests", headers={"Prefer": "wait=60"},
                                     json={"input": {"image_url": photo_uri()}}).json()
                bench.sink.completed_at(answer["request_id"], timeout=90)
            yield svc, client, record.id
    finally:
        procs.stop()


def photo_uri() -> str:
    """The sample photo as a data URI (what every request of the bench sends)."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()


def one_request(bench: Bench, client: Any) -> tuple[float, float, float]:
    """Make one request; return (POST → subscriber has request.completed, inference, and
    queue_time: created → started, the wait for the inference worker included) in s."""
    started = time.time()
    request_id = client.post("/v1/requests", json={"input": {"image_url": photo_uri()}}
                             ).json()["request_id"]
    whole = bench.sink.completed_at(request_id) - started
    metrics = client.get(f"/v1/requests/{request_id}").json()["metrics"]
    return whole, metrics["inference_time"], metrics.get("queue_time", 0.0)


def percentile(samples: list[float], q: float) -> float:
    """Return the ``q`` quantile (nearest rank) of the samples."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def overhead(bench: Bench, client: Any) -> list[list[str]]:
    """Rows: POST → request.completed at the subscriber, minus inference, 1 and 8 clients."""
    import httpx

    args = bench.args
    sequential = [one_request(bench, client) for _ in range(args.sequential)]

    def one_client(count: int) -> list[tuple[float, float, float]]:
        with httpx.Client(base_url=str(client.base_url), headers=dict(client.headers),
                          timeout=90, trust_env=False) as own:
            return [one_request(bench, own) for _ in range(count)]

    per_client = max(1, math.ceil(args.concurrent / args.clients))
    with ThreadPoolExecutor(args.clients) as pool:
        parallel = [x for part in pool.map(one_client, [per_client] * args.clients) for x in part]
    rows = []
    for label, samples, target, check in (
            ("one at a time", sequential, "p50 ≤ 30 ms, p99 ≤ 150 ms",
             lambda p50, p99: p50 <= 30 and p99 <= 150),
            (f"{args.clients} clients", parallel, "p50 ≤ 100 ms", lambda p50, p99: p50 <= 100)):
        extra = [(whole - inference) * 1000 for whole, inference, _ in samples]
        p50, p99 = percentile(extra, 0.5), percentile(extra, 0.99)
        share = statistics.median(w for w, _, _ in samples) / statistics.median(
            i for _, i, _ in samples)
        rows.append([f"overhead, {label}: POST → subscriber has `request.completed`, minus "
                     f"inference, p50 / p99 ({len(samples)} requests)",
                     f"{p50:,.0f} / {p99:,.0f} ms", "—", f"whole / inference = {share:.1f}",
                     target, met(check(p50, p99))])
    # With one inference worker, concurrent clients mostly wait for each other's inference:
    # the same samples without queue_time (created → started) show what the rest costs.
    rest = [(whole - inference - queued) * 1000 for whole, inference, queued in parallel]
    rows[-1][3] += (f"; minus queue_time too: {percentile(rest, 0.5):,.0f} / "
                    f"{percentile(rest, 0.99):,.0f} ms")
    return rows


def end_to_end(bench: Bench, client: Any) -> list[list[str]]:
    """Row: requests/s through the service with one inference worker, against the engine."""
    from app.engine import load_engine, render
    from app.images import decode_image

    args = bench.args
    engine = load_engine("mediapipe")
    image = decode_image(SAMPLE.read_bytes(), max_pixels=40_000_000)
    options = {"image_url": photo_uri()}
    render(engine, image, options)  # warm

    def ours() -> float:
        started = time.time()
        ids = [client.post("/v1/requests", json={"input": options}).json()["request_id"]
               for _ in range(args.e2e_requests)]
        last = max(bench.sink.completed_at(request_id, timeout=120) for request_id in ids)
        return len(ids) / (last - started)

    def alone() -> float:
        started = time.perf_counter()
        for _ in range(args.e2e_requests):
            render(engine, image, options)
        return args.e2e_requests / (time.perf_counter() - started)

    mine, base = (statistics.median(x) for x in rounds_of(args.rounds, ours, alone))
    return [[f"requests/s end to end, 1 inference worker ({args.e2e_requests} back to back, "
             "until the subscriber has each `request.completed`)", f"{mine:.2f}",
             f"the engine alone (`app.engine.render`, same photo): {base:.2f} renders/s",
             ratio(mine, base), "≥ 0.8", met(mine / base >= 0.8 if base else None)]]


def make_records(svc: Any, key_id: str, count: int, seconds: float = 600) -> None:
    """Create ``count`` IN_QUEUE requests of one key through the store, 8 at a time."""
    from app.store import requests as store

    deadline = time.monotonic() + seconds

    def make(_: int) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"making {count} records took over {seconds} s")
        store.create(svc.redis, key_id=key_id, provider="local",
                     input={"image_url": "http://127.0.0.1:9/photo.jpg"})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(count), chunksize=256))


def lists(bench: Bench, svc: Any, client: Any) -> list[list[str]]:
    """Row: a status-filtered page matching nothing, for keys with each number of records."""
    from app.store import apikeys

    args = bench.args
    sizes = args.list_sizes
    keys = []
    for size in sizes:
        record, key = apikeys.create(svc.redis, f"bench-list-{size}")
        make_records(svc, record.id, size)
        keys.append(key)

    def timed(key: str) -> Callable[[], float]:
        def step() -> float:
            samples = []
            for _ in range(args.list_calls):
                started = time.perf_counter()
                answer = client.get("/v1/requests", params={"status": "COMPLETED", "limit": 20},
                                    headers={"Authorization": f"Key {key}"})
                samples.append(time.perf_counter() - started)
                if answer.status_code != 200 or answer.json()["requests"]:
                    raise RuntimeError(f"list: {answer.status_code} {answer.text[:300]}")
            return statistics.median(samples) * 1000
        return step

    medians = [statistics.median(x) for x in rounds_of(args.rounds, *map(timed, keys))]
    growth = medians[-1] / medians[0]
    return [["`GET /v1/requests?status=COMPLETED&limit=20`, none matching, at "
             + " / ".join(f"{size:,}" for size in sizes) + " records, p50",
             " / ".join(f"{m:,.1f}" for m in medians) + " ms", "—",
             f"{sizes[-1]:,} / {sizes[0]:,} = {growth:.2f}", "≤ 2", met(growth <= 2)]]


# -- the table ------------------------------------------------------------------------------


def ratio(mine: float, base: float) -> str:
    """Return ours / baseline, with enough digits for small ratios."""
    if not base:
        return "n/a"
    value = mine / base
    return f"{value:.2f}" if value >= 0.1 else f"{value:.4f}"


def met(ok: bool | None) -> str:
    """Return the target column's verdict."""
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def table(rows: list[list[str]]) -> str:
    """Return the rows as a Markdown table."""
    lines = ["| what | posehook | baseline | ratio | target | |", "|---|---|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


PARTS = ("fanout", "ingress", "overhead", "e2e", "lists")
QUICK = {"rounds": 1, "deliveries": 10, "fanout_seconds": 5.0, "raw_seconds": 0.5,
         "ingress_seconds": 0.5, "sequential": 2, "concurrent": 4, "e2e_requests": 2,
         "list_sizes": [10, 100, 1000], "list_calls": 2}
FULL = {"rounds": 3, "deliveries": 150, "fanout_seconds": 20.0, "raw_seconds": 3.0,
        "ingress_seconds": 3.0, "sequential": 30, "concurrent": 48, "e2e_requests": 20,
        "list_sizes": [100, 10_000, 100_000], "list_calls": 10}


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--quick`` fills what is not given with small counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every part briefly")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ",".join(PARTS))
    parser.add_argument("--workers", type=int, default=2, help="fast-queue workers (besides 1)")
    parser.add_argument("--rounds", type=int, help="ours/baseline rounds per figure (median)")
    parser.add_argument("--deliveries", type=int, help="deliveries queued per fan-out round")
    parser.add_argument("--fanout-seconds", type=float, help="at most this long per round")
    parser.add_argument("--raw-seconds", type=float, help="each raw loop round")
    parser.add_argument("--ingress-seconds", type=float, help="each ingress round")
    parser.add_argument("--threads", type=int, default=8, help="ingress client threads")
    parser.add_argument("--sequential", type=int, help="requests one at a time (overhead)")
    parser.add_argument("--concurrent", type=int, help="requests over --clients (overhead)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--e2e-requests", type=int, help="requests per end-to-end round")
    parser.add_argument("--list-sizes", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--list-calls", type=int, help="list calls per size and round")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the chosen parts and print the table."""
    from tests import redis_server

    args = options(argv)
    load_before = os.getloadavg()
    base, embedded = redis_server.base_url()
    url = redis_server.claim_database(base)
    sink = Sink()
    rows: list[list[str]] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="posehook-bench-") as work:
            bench = Bench(url, Path(work), sink, args)
            if "fanout" in args.parts:
                rows += fanout(bench)
            if "ingress" in args.parts:
                rows += ingress(bench)
            if {"overhead", "e2e", "lists"} & set(args.parts):
                with service(bench) as (svc, client, _):
                    if "overhead" in args.parts:
                        rows += overhead(bench, client)
                    if "e2e" in args.parts:
                        rows += end_to_end(bench, client)
                    if "lists" in args.parts:
                        rows += lists(bench, svc, client)
    finally:
        sink.stop()
        redis_server.release_database(url)
        if embedded is not None:
            embedded.stop()
    print(table(rows))
    print(f"\n{args.rounds} round(s) per figure, ours and baseline alternating; "
          f"{time.monotonic() - started:.0f} s in all; load average (1, 5, 15 min) "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} after.")


if __name__ == "__main__":
    main()
