"""posehook on six hosts: network namespaces made by the test, each running its Procfile lines.

| host        | address     | runs                                                          |
|-------------|-------------|---------------------------------------------------------------|
| `redis`     | 10.231.N.2  | Debian's redis-server, with a password (production Redis)     |
| `s3`        | 10.231.N.3  | moto's S3 server (the bucket)                                 |
| `web1/web2` | .11 / .12   | the Procfile's `web` (gunicorn on POSEHOOK_BIND)              |
| `inference` | 10.231.N.21 | the Procfile's `inference` (the mediapipe engine)             |
| `jobs`      | 10.231.N.31 | the Procfile's `worker`, `delivery`, `retry`, `maintenance`,  |
|             |             | `cron`: submit, settle, deliveries, the sweeper and janitor   |
| (this test) | 10.231.N.1  | the clients, the subscriber and the photo server              |

Each process gets only its host's environment (``host_env``): the Redis URL, the bucket and
the AWS variables, the signing key, the one subnet ALLOWED_CIDRS lets through, its own data
directory (no host shares a disk). 100 requests go to the two web hosts; every one completes,
the subscriber gets each request's three events from the jobs host, signed, and every result
is served by both web hosts from the bucket. ``docs/deploy.md`` uses this layout as its example.
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.pipeline import procfile_lines
from tests import netns

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs Debian's redis-server (apt-get install redis)")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUESTS = 100
JOBS_LINES = ("worker", "delivery", "retry", "maintenance", "cron")
EVENTS = [("request.queued", 1), ("request.started", 2), ("request.completed", 3)]
AWS = {"AWS_ACCESS_KEY_ID": "posehook-multihost", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
       "AWS_REGION": "us-east-1"}


@dataclass
class Deployment:
    """The running hosts: the network, the web hosts' URLs, an API key, the bucket."""

    net: netns.Network
    web: list[str]
    key: str
    bucket: str
    s3_endpoint: str
    started_in: float

    def host(self, role: str) -> netns.Host:
        return self.net.hosts[role]

    def tails(self) -> str:
        """The end of every process's log (not the access log's GETs), for a failure."""
        parts = []
        for path in sorted(self.net.workdir.glob("*.log")):
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if '"GET ' not in line]
            parts.append(f"--- {path.name}\n" + "\n".join(lines[-25:]))
        return "\n".join(parts)

    def memory(self) -> dict[str, float]:
        """Return the resident MiB of each process started, its children included."""
        import psutil

        found = {}
        for name, proc in self.net.procs:
            try:
                tree = [psutil.Process(proc.pid)]
                tree += tree[0].children(recursive=True)
                found[name] = sum(p.memory_info().rss for p in tree) / 2**20
            except psutil.NoSuchProcess:
                continue
        return found


def host_env(net: netns.Network, host: netns.Host, common: dict[str, str],
             **settings: str) -> dict[str, str]:
    """Return all a process on ``host`` sees: the basics, the shared settings, its own."""
    home = net.workdir / host.role
    home.mkdir(exist_ok=True)
    return {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home),
            "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT), "GLOG_minloglevel": "2",
            "TF_CPP_MIN_LOG_LEVEL": "2", "POSEHOOK_DATA_DIR": str(home / "data"),
            **common, **settings}


def _wait(check, what: str, net: netns.Network, seconds: float = 150) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        net.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds} s")
        time.sleep(0.2)


def _start_backing_services(net: netns.Network) -> tuple[str, str, str]:
    """Redis and the S3 server on their hosts; return the Redis URL, S3 endpoint, bucket."""
    import socket

    import boto3

    redis_host, s3_host = net.add_host("redis", 2), net.add_host("s3", 3)
    password = secrets.token_urlsafe(18)
    conf = net.workdir / "redis.conf"
    conf.write_text(f"bind {redis_host.address}\nport 6379\nrequirepass {password}\n"
                    f"save \"\"\nappendonly no\ndir {net.workdir}\n")
    bare = host_env(net, redis_host, {})
    net.run(redis_host, "redis-server", ["redis-server", str(conf)], bare)
    net.run(s3_host, "moto", [sys.executable, "-m", "moto.server", "-H", s3_host.address,
                              "-p", "5000"], host_env(net, s3_host, {}))
    for address, port in ((redis_host.address, 6379), (s3_host.address, 5000)):
        _wait(lambda a=address, p=port: socket.create_connection((a, p), 1).close() is None,
              f"{address}:{port} answering", net, 60)
    endpoint = f"http://{s3_host.address}:5000"
    bucket = "posehook-" + secrets.token_hex(6)
    boto3.client("s3", endpoint_url=endpoint, region_name=AWS["AWS_REGION"],
                 aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
    return f"redis://:{password}@{redis_host.address}:6379/0", endpoint, bucket


def deploy(net: netns.Network) -> Deployment:
    """Make the hosts and start every process; return once both web hosts are ready."""
    import base64

    begun = time.monotonic()
    net.create()
    redis_url, endpoint, bucket = _start_backing_services(net)
    web1, web2 = net.add_host("web1", 11), net.add_host("web2", 12)
    inference, jobs = net.add_host("inference", 21), net.add_host("jobs", 31)
    urls = [f"http://{h.address}:8000" for h in (web1, web2)]
    common = {"REDIS_URL": redis_url, "POSEHOOK_STORAGE_URL": f"s3://{bucket}/files",
              "POSEHOOK_STORAGE_ENDPOINT_URL": endpoint, **AWS,
              "POSEHOOK_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
              "POSEHOOK_ALLOWED_CIDRS": net.cidr}
    lines = procfile_lines()
    envs = {}
    for host, url in ((web1, urls[0]), (web2, urls[1])):
        envs[host.role] = host_env(net, host, common, POSEHOOK_PUBLIC_BASE_URL=url,
                                   POSEHOOK_BIND=f"{host.address}:8000")
        net.run(host, "web", lines["web"], envs[host.role])
    # The inference host names web1 in result URLs and calls back web2's ingress.
    net.run(inference, "inference", lines["inference"], host_env(
        net, inference, common, POSEHOOK_PUBLIC_BASE_URL=urls[0],
        POSEHOOK_INTERNAL_BASE_URL=urls[1], POSEHOOK_ENGINE="mediapipe"))
    jobs_env = host_env(net, jobs, common, POSEHOOK_PUBLIC_BASE_URL=urls[0])
    for name in JOBS_LINES:
        net.run(jobs, name, lines[name], jobs_env)
    for url in urls:
        _wait(lambda u=url: httpx.get(f"{u}/readyz", timeout=5).status_code == 200,
              f"{url}/readyz answering 200", net)
    # An operator's first step on a web host: an API key, from the CLI.
    created = net.exec(web1, [str(BIN / "flask"), "--app", "wsgi", "keys", "create",
                              "--name", "multihost"], envs["web1"])
    key = re.search(r"^key: (\S+)$", created, re.M).group(1)
    return Deployment(net, urls, key, bucket, endpoint, time.monotonic() - begun)


def _need_namespaces() -> None:
    why = netns.unavailable()
    if why:
        pytest.skip(f"the multi-host test makes network namespaces, and cannot here: {why}")


def _gone(net: netns.Network) -> None:
    deadline = time.monotonic() + 10  # a deleted namespace's veth goes a moment later
    while net.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not net.leftovers(), net.leftovers()


@pytest.fixture(scope="module")
def deployment(request, tmp_path_factory):
    """The six hosts, running; every process, namespace and link removed afterwards."""
    _need_namespaces()
    netns.remove_stale()
    net = netns.Network(tmp_path_factory.mktemp("hosts"))
    net.stop_last = ("redis", "s3")

    def remove() -> None:
        net.close()
        _gone(net)

    request.addfinalizer(remove)
    return deploy(net)


def test_closing_ends_a_stubborn_process_and_removes_every_namespace_and_link(tmp_path):
    _need_namespaces()
    net = netns.Network(tmp_path)
    try:
        net.create()
        a, b = net.add_host("a", 2), net.add_host("b", 3)
        stubborn = net.run(a, "stubborn", "trap '' TERM; sleep 600", {"PATH": "/usr/bin:/bin"})
        seen = net.exec(b, ["ip", "-o", "-4", "addr", "show"], {"PATH": "/usr/sbin:/usr/bin:/bin"})
        assert b.address in seen and a.address not in seen  # a host of its own
    finally:
        net.close(grace=1)
    assert stubborn.poll() is not None
    _gone(net)


def test_what_a_crashed_run_left_is_removed_by_the_next(tmp_path):
    import subprocess

    _need_namespaces()
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names the leftovers of a run that no longer exists
    names = [f"{netns.PREFIX}-{dead.pid}-web1", f"{netns.PREFIX}{dead.pid}br"]
    subprocess.run(["ip", "netns", "add", names[0]], check=True)
    subprocess.run(["ip", "link", "add", names[1], "type", "bridge"], check=True)
    try:
        assert set(names) <= set(netns.remove_stale())
        assert names[0] not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                              text=True).stdout
        assert subprocess.run(["ip", "link", "show", names[1]], capture_output=True).returncode != 0
    finally:
        subprocess.run(["ip", "netns", "delete", names[0]], capture_output=True)
        subprocess.run(["ip", "link", "delete", names[1]], capture_output=True)


def _submit(http: httpx.Client, base: str, image_url: str) -> str:
    """Submit one request as a client would: on 429, again after its Retry-After."""
    while True:
        answer = http.post(f"{base}/v1/requests", json={"input": {"image_url": image_url}})
        if answer.status_code != 429:
            assert answer.status_code == 202, answer.text
            return answer.json()["request_id"]
        time.sleep(float(answer.headers["Retry-After"]))


def _wait_all_ended(http: httpx.Client, d: Deployment, ids: dict[str, int]) -> dict[str, dict]:
    """Poll each request's status on the web host it was not sent to; return the records."""
    open_ids = set(ids)
    deadline = time.monotonic() + 150
    while open_ids and time.monotonic() < deadline:
        for request_id in sorted(open_ids):
            other = d.web[1 - ids[request_id]]
            status = http.get(f"{other}/v1/requests/{request_id}/status").json()["status"]
            if status in ("COMPLETED", "FAILED", "CANCELLED"):
                open_ids.discard(request_id)
        d.net.check_running()
        time.sleep(0.3)
    assert not open_ids, f"{len(open_ids)} requests still open\n{d.tails()}"
    return {i: http.get(f"{d.web[1 - ids[i]]}/v1/requests/{i}").json() for i in ids}


def _events_by_request(sink, secret: str, jwk: dict) -> dict[str, dict[str, dict]]:
    """Verify every delivery (HMAC v1 and ED25519 v1a); group them by request and webhook-id."""
    import base64

    import standardwebhooks
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from app.signing.keys import b64url_decode

    public = Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    grouped: dict[str, dict[str, dict]] = defaultdict(dict)
    for got in list(sink.received):
        payload = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
        v1a = [s for s in got.headers["webhook-signature"].split(" ") if s.startswith("v1a,")]
        signed = f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
        public.verify(base64.b64decode(v1a[0][4:]), signed + got.body)
        grouped[payload["data"]["request_id"]][got.headers["webhook-id"]] = payload
    return grouped


def test_requests_over_two_web_hosts_all_complete_with_every_event(deployment, sample_bytes):
    from PIL import Image

    from tests.sinks import Sink, serve_photo

    d = deployment
    gateway = d.net.gateway
    sink = Sink(host=gateway).start()
    photo, photo_url = serve_photo(sample_bytes, host=gateway)
    try:
        with httpx.Client(headers={"Authorization": f"Key {d.key}"}, timeout=30,
                          trust_env=False) as http:
            jwks = [http.get(f"{url}/.well-known/jwks.json").json() for url in d.web]
            assert jwks[0] == jwks[1]  # one signing key on every host
            subscribed = http.post(f"{d.web[1]}/v1/subscriptions",
                                   json={"url": sink.url, "events": ["request.*"]})
            assert subscribed.status_code == 201, subscribed.text
            upload = http.post(f"{d.web[0]}/v1/files", content=sample_bytes,
                               params={"file_name": "pose.jpg"},
                               headers={"Content-Type": "image/jpeg"}).json()
            assert httpx.get(f"{d.web[1]}/files/{upload['key']}").content == sample_bytes

            # Even requests to web1 with the photo's URL, odd ones to web2 with web1's upload.
            began = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                submitted = list(pool.map(lambda n: _submit(
                    http, d.web[n % 2], photo_url if n % 2 == 0 else upload["url"]),
                    range(REQUESTS)))
            ids = {request_id: n % 2 for n, request_id in enumerate(submitted)}
            records = _wait_all_ended(http, d, ids)
            _wait(lambda: len({h for r in sink.received for h in [r.headers["webhook-id"]]})
                  >= 3 * REQUESTS, "every event at the subscriber", d.net, 60)
            took = time.monotonic() - began

            ended = [r["status"] for r in records.values()]
            assert ended.count("COMPLETED") == REQUESTS, (ended, d.tails())
            events = _events_by_request(sink, subscribed.json()["secret"], jwks[0]["keys"][0])
            for request_id in ids:
                got = sorted(events[request_id].values(), key=lambda p: p["data"]["sequence"])
                assert [(p["type"], p["data"]["sequence"]) for p in got] == EVENTS, request_id
            assert {r.peer for r in sink.received} == {d.host("jobs").address}
            assert set(photo.peers) == {d.host("inference").address}

            for request_id, record in records.items():
                image = record["output"]["image"]
                assert image["url"].startswith(d.web[0] + "/files/")
                key = image["url"].rsplit("/", 1)[1]
                served = [httpx.get(f"{url}/files/{key}") for url in d.web]
                assert [s.status_code for s in served] == [200, 200], request_id
                assert served[0].content == served[1].content
                assert len(served[0].content) == image["file_size"]
            picture = Image.open(io.BytesIO(served[1].content))
            assert picture.format == "PNG" and picture.size == (194, 259)
            _assert_hosts_kept_their_roles(d, records)
            metrics = [httpx.get(f"{url}/metrics").text for url in d.web]
            assert _metric(metrics[0], "posehook_storage_files") >= REQUESTS
            assert _metric(metrics[0], "posehook_deliveries_pending") == 0
            rss = ", ".join(f"{n} {m:.0f}" for n, m in d.memory().items())
            print(f"\nresident MiB (each process with its children): {rss}")
            print(f"six hosts ready in {d.started_in:.1f} s; {REQUESTS} requests submitted, "
                  f"completed and their {3 * REQUESTS} events delivered in {took:.1f} s; "
                  f"{len(sink.received)} deliveries received")
    finally:
        sink.stop()
        photo.shutdown()
        photo.server_close()


def _metric(text: str, name: str) -> float:
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def _assert_hosts_kept_their_roles(d: Deployment, records: dict[str, dict]) -> None:
    """Callbacks reached web2 alone, from the inference host; no host kept a file on disk;
    the bucket holds every result; the sweeper ran on the jobs host."""
    import boto3

    access = {role: d.net.log(d.host(role), "web") for role in ("web1", "web2")}
    callbacks = re.findall(r'^(\S+) .*"POST /webhooks/fal\S* HTTP/1.1" 200 ', access["web2"],
                           re.M)
    assert len(callbacks) >= REQUESTS and set(callbacks) == {d.host("inference").address}
    assert "POST /webhooks/fal" not in access["web1"]
    for role in d.net.hosts:
        assert not (d.net.workdir / role / "data" / "files").exists(), role
    s3 = boto3.client("s3", endpoint_url=d.s3_endpoint, region_name=AWS["AWS_REGION"],
                      aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"])
    stored = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=d.bucket, Prefix="files/") for o in page.get("Contents", [])}
    outputs = {"files/" + r["output"]["image"]["url"].rsplit("/", 1)[1] for r in records.values()}
    assert outputs <= stored
    ready = httpx.get(f"{d.web[0]}/readyz").json()
    assert ready["sweeper"]["last_run_age_seconds"] is not None, ready
    assert len(ready["inference_workers"]) == 1
