"""Redis behind Sentinel: a primary, a replica and three sentinels of Debian's redis-server on
127.0.0.1; the primary is killed while requests are being accepted, and none is lost.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.redis_server import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs Debian's redis-server (apt-get install redis)")
MASTER = "posehook"
ROOT = Path(__file__).resolve().parent.parent
SWITCH_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


class Cluster:
    """redis-server processes: primary, replica, three sentinels (quorum 2)."""

    def __init__(self, root) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.primary, self.replica = free_port(), free_port()
        self._server("primary", self.primary)
        self._server("replica", self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        self.sentinels = []
        for n in range(3):
            port = free_port()
            conf = root / f"sentinel{n}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {root}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 10000\n")
            self.procs[f"sentinel{n}"] = subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
            self.sentinels.append(f"127.0.0.1:{port}")

    def _server(self, name: str, port: int, *extra: str) -> None:
        (self.root / name).mkdir()
        self.procs[name] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root / name), *extra],
            stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


def wait_for(check, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except SWITCH_ERRORS:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def run_until_all_end(svc, ids: list[str], rounds: int = 40) -> None:
    """Work every queue with a burst SimpleWorker (over Sentinel) until each request ended."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from app import queues
    from app.store import requests as store

    names = (*queues.FAST_QUEUES, queues.INFERENCE)
    for _ in range(rounds):
        if all(store.get(svc.redis, i).status.is_terminal for i in ids):
            return
        SimpleWorker([queues.queue(svc.rq, n) for n in names], connection=svc.rq,
                     serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
    raise AssertionError("requests still running after the workers emptied the queues")


def _serve_on_sentinels(cluster, tmp_path):
    """Once replication and every sentinel are up, serve the app, found through the sentinels.

    Returns:
        The app's Services (installed for in-process jobs) and its LiveServer.
    """
    from redis import Redis

    from app import create_app
    from app import services as services_module
    from tests.conftest import LiveServer

    replica = Redis(port=cluster.replica)
    wait_for(lambda: replica.info("replication")["master_link_status"] == "up", "replication")
    # Each sentinel must know the replica and the two others before a failover can run.
    for address in cluster.sentinels:
        sentinel = Redis(port=int(address.rsplit(":", 1)[1]), decode_responses=True)
        wait_for(lambda s=sentinel: s.sentinel_master(MASTER)["num-slaves"] == 1
                 and s.sentinel_master(MASTER)["num-other-sentinels"] == 2,
                 f"sentinel {address} seeing the replica and the other sentinels")
    port = free_port()
    app = create_app({"redis_url": "redis://ignored:1/3", "redis_sentinels": cluster.sentinels,
                      "redis_sentinel_master": MASTER, "data_dir": str(tmp_path / "data"),
                      "public_base_url": f"http://127.0.0.1:{port}", "engine": "mediapipe",
                      "allowed_cidrs": ["127.0.0.0/8"], "rate_per_key": 0})
    svc = app.extensions["posehook"]
    services_module.install(svc)
    live = LiveServer(app, port)
    wait_for(lambda: svc.redis.ping(), "the sentinels naming the primary")
    return svc, live


def test_requests_survive_a_failover_of_the_primary(tmp_path, sample_bytes):
    import httpx

    from app import queues
    from app import services as services_module
    from app.store import apikeys
    from app.store import requests as store
    from tests.sinks import serve_photo

    cluster = Cluster(tmp_path)
    photo, photo_url = serve_photo(sample_bytes)
    live = None
    try:
        svc, live = _serve_on_sentinels(cluster, tmp_path)
        assert svc.redis.connection_pool.get_master_address()[1] == cluster.primary
        key = apikeys.create(svc.redis, "failover")[1]

        accepted: list[str] = []
        seen: list[str] = []  # what the client got while the master switched
        outage = [0.0, 0.0]

        def submit(n: int) -> None:
            """Submit one request as a client would: on 503, again with the same key."""
            while True:
                try:
                    answer = httpx.post(f"{live.url}/v1/requests", timeout=30, json={
                        "input": {"image_url": photo_url}}, headers={
                        "Authorization": f"Key {key}", "Idempotency-Key": f"idem-{n}"})
                except httpx.TransportError as exc:
                    answer = None
                    seen.append(type(exc).__name__)
                if answer is not None and answer.status_code in (200, 201, 202):
                    accepted.append(answer.json()["request_id"])
                    if seen and not outage[1]:
                        outage[1] = time.monotonic()
                    return
                if answer is not None:
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["Retry-After"]
                    seen.append(str(answer.status_code))
                if len(seen) == 1:
                    outage[0] = time.monotonic()
                time.sleep(0.05)  # a real client waits Retry-After (5 s); this one is eager

        for n in range(50):
            submit(n)
        run_until_all_end(svc, accepted[:20])  # some ended before the switch, most did not
        # Acknowledged writes are replicated asynchronously: WAIT makes those so far durable.
        assert svc.redis.execute_command("WAIT", 1, 5000) == 1
        cluster.procs["primary"].kill()
        cluster.procs["primary"].wait()
        for n in range(50, 100):
            submit(n)
        assert svc.redis.connection_pool.get_master_address()[1] == cluster.replica
        assert len(accepted) == len(set(accepted)) == 100
        # The Procfile's fast workers: rq's own command line, over Sentinel by app.rq_settings.
        env = {**os.environ, "REDIS_URL": "redis://ignored:1/3",
               "REDIS_SENTINELS": ",".join(cluster.sentinels), "REDIS_SENTINEL_MASTER": MASTER,
               "POSEHOOK_PUBLIC_BASE_URL": live.url, "POSEHOOK_DATA_DIR": str(tmp_path / "d")}
        wait = subprocess.run([sys.executable, "-m", "app.embedded_redis", "wait",
                               env["REDIS_URL"], "20"], cwd=ROOT, env=env, timeout=60)
        assert wait.returncode == 0
        queued = queues.queue(svc.rq, queues.SUBMIT).count
        assert queued == 50  # the requests accepted after the failover, on the new master
        subprocess.run([str(Path(sys.executable).parent / "rq"), "worker", "-w",
                        "jobs.fast_worker.Worker", "--serializer", "json", "-c",
                        "app.rq_settings", "--burst", queues.SUBMIT], cwd=ROOT, env=env,
                       timeout=120, check=True, stdout=subprocess.DEVNULL)
        assert queues.queue(svc.rq, queues.SUBMIT).count == 0
        assert queues.queue(svc.rq, queues.INFERENCE).count == queued
        run_until_all_end(svc, accepted)
        ended = [store.get(svc.redis, i).status.value for i in accepted]
        assert ended.count("COMPLETED") == 100, ended
        print(f"during the switch the client saw {len(seen)} answers "
              f"({sorted(set(seen))}) over {outage[1] - outage[0]:.1f} s")
        assert seen  # the kill was seen: the test crossed a failover
    finally:
        services_module.install(None)
        if live is not None:
            live.stop()
        photo.shutdown()
        photo.server_close()
        cluster.stop()


def test_a_primary_killed_while_jobs_run_loses_no_request(tmp_path, sample_bytes):
    """The kill lands mid-job: what the lost primary had not passed on, the sweeper heals."""
    import threading

    import httpx
    from redis import Redis

    from app import services as services_module
    from app.store import apikeys
    from app.store import requests as store
    from jobs.sweep import sweep
    from tests.sinks import serve_photo

    cluster = Cluster(tmp_path)
    photo, photo_url = serve_photo(sample_bytes)
    live = None
    try:
        svc, live = _serve_on_sentinels(cluster, tmp_path)
        key = apikeys.create(svc.redis, "failover")[1]
        ids = [httpx.post(f"{live.url}/v1/requests", json={"input": {"image_url": photo_url}},
                          headers={"Authorization": f"Key {key}"}, timeout=30
                          ).json()["request_id"] for _ in range(40)]
        primary = Redis(port=cluster.primary, db=3, decode_responses=True)
        primary.set("posehook-test:mark", "1")
        assert primary.execute_command("WAIT", 1, 5000) == 1  # the 40 records are replicated
        killed_after: list[int] = []

        def kill_mid_run() -> None:
            """Kill the primary once some requests completed and the rest are in flight."""
            while True:
                done = sum(store.get(primary, i).status.value == "COMPLETED" for i in ids)
                if done >= 10:
                    cluster.procs["primary"].kill()
                    killed_after.append(done)
                    return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_mid_run, daemon=True)
        killer.start()
        sweeps = 0
        for _ in range(6):  # bursts of every queue; the sweeper heals what the kill stranded
            try:
                run_until_all_end(svc, ids, rounds=3)
                break
            except (AssertionError, *SWITCH_ERRORS):
                wait_for(lambda: svc.redis.ping(), "a master after the failover")
                sweep(now=time.time() + 3600)  # as the sweeper will, once the leases run out
                sweeps += 1
        killer.join(timeout=60)
        assert killed_after and killed_after[0] < len(ids)  # it died with work in flight
        assert svc.redis.connection_pool.get_master_address()[1] == cluster.replica
        ended = [store.get(svc.redis, i) for i in ids]
        assert all(r is not None for r in ended)  # no request lost
        assert [r.status.value for r in ended].count("COMPLETED") == len(ids)
        print(f"killed after {killed_after[0]} of {len(ids)} completed; {sweeps} sweep(s); "
              f"attempts {sorted(r.attempts for r in ended)[-3:]}")
    finally:
        services_module.install(None)
        if live is not None:
            live.stop()
        photo.shutdown()
        photo.server_close()
        cluster.stop()
