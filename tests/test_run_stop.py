"""``make run`` stops in order on SIGTERM and on Ctrl-C: workers finish, Redis goes last.

Each test starts the real ``make run`` (embedded Redis, gunicorn, the RQ worker, the
inference worker, the clock) with its data in a temporary directory and its own ports,
puts a job in the fast worker's hands, stops the run and reads what it printed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job, JobStatus

from app import queues
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("redis", "web", "worker", "delivery", "retry", "maintenance", "inference", "cron")


def _wait(predicate, seconds: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Run:
    """One ``make run`` in its own process group, printing into ``out.log``."""

    def __init__(self, tmp_path: Path) -> None:
        self.redis_port, web_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{web_port}"
        self.data = tmp_path / "data"
        self.log = tmp_path / "out.log"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(POSEHOOK_DATA_DIR=str(self.data), POSEHOOK_REDIS_PORT=str(self.redis_port),
                   POSEHOOK_BIND=f"127.0.0.1:{web_port}", POSEHOOK_PUBLIC_BASE_URL=self.url,
                   POSEHOOK_ENGINE="mediapipe", POSEHOOK_WEB_WORKERS="1",
                   GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")
        with open(self.log, "wb") as out:
            self.make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def honcho_pid(self) -> int:
        """The process ``make`` runs (the recipe's shell execs the process manager)."""
        children = Path(f"/proc/{self.make.pid}/task/{self.make.pid}/children").read_text()
        return int(children.split()[0])

    def kill(self) -> None:
        """Leave nothing running after a failed test."""
        if self.make.poll() is None:
            os.killpg(self.make.pid, signal.SIGKILL)
        for pid in self.started_pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def started_pids(self) -> dict[str, int]:
        return {m[1]: int(m[2]) for m in re.finditer(r"(\w+)\.1 started \(pid=(\d+)\)",
                                                      self.output())}


@pytest.fixture
def run(tmp_path):
    """``make run`` up and ready (the inference worker has loaded the mediapipe engine)."""
    checkout_data = (ROOT / "data").exists()
    started = Run(tmp_path)
    try:
        _wait(lambda: _ready(started.url), 90, "/readyz answering 200", started.make,
              started.log)
        yield started
    finally:
        started.kill()
        started.make.wait(10)
    assert (ROOT / "data").exists() == checkout_data, "make run wrote ./data of the checkout"


def _job_in_progress(run: Run) -> str:
    """Give the fast worker a 2-second job and return its id once the job has started."""
    connection = Redis(host="127.0.0.1", port=run.redis_port)
    job = queues.queue(connection, queues.MAINTENANCE).enqueue("time.sleep", 2)
    _wait(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job starting",
          run.make, run.log)
    connection.close()  # a client still connected would hold the embedded Redis back
    return job.id


def _status_after_restart(run: Run, job_id: str) -> JobStatus:
    """Start the embedded Redis again on the run's data and read the job's status."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "app.embedded_redis", str(port),
                               str(run.data / "redis")], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        connection = Redis(host="127.0.0.1", port=port)
        _wait(lambda: _answers(connection), 30, "the restarted Redis answering", server,
              run.log)
        status = Job.fetch(job_id, connection=connection,
                           serializer=queues.JSONSerializer).get_status()
        connection.close()
        return status
    finally:
        server.terminate()
        server.wait(30)


def _answers(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except Exception:  # noqa: BLE001 - still starting
        return False


def _assert_clean_stop(run: Run, output: str) -> None:
    assert "Traceback" not in output, output
    assert "make: ***" not in output, output  # make reports a failing recipe so
    stops = [(m.start(), m[1], m[2]) for m in re.finditer(r"(\w+)\.1 stopped \(rc=(-?\d+)\)",
                                                           output)]
    assert sorted(name for _, name, _ in stops) == sorted(NAMES), output
    assert all(rc == "0" for _, _, rc in stops), output
    assert max(stops)[1] == "redis", output  # Redis stopped after every other process
    pids = run.started_pids()
    assert sorted(pids) == sorted(NAMES), output
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # nothing of the process group is left
    # redis-server runs in a group of its own: gone when its port takes no connection
    with pytest.raises(RedisConnectionError):
        Redis(host="127.0.0.1", port=run.redis_port, socket_connect_timeout=1).ping()


def test_sigterm_stops_the_run_in_order_and_make_exits_0(run):
    job_id = _job_in_progress(run)
    os.kill(run.honcho_pid(), signal.SIGTERM)  # as a service manager stops what make runs
    assert run.make.wait(60) == 0, run.output()
    _assert_clean_stop(run, run.output())
    assert _status_after_restart(run, job_id) == JobStatus.FINISHED


def test_ctrl_c_stops_the_run_in_order(run):
    job_id = _job_in_progress(run)
    os.killpg(run.make.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    # GNU make, itself interrupted, waits for the recipe and then dies of the same signal
    # whatever the recipe's status; a failing recipe would add "make: *** ... Error N".
    assert run.make.wait(60) == -signal.SIGINT, run.output()
    _assert_clean_stop(run, run.output())
    assert _status_after_restart(run, job_id) == JobStatus.FINISHED


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _supervised(run: Run, name: str) -> int:
    """The pid of the command a Procfile process's supervisor runs now."""
    return _children(run.started_pids()[name])[0]


def test_a_process_killed_by_hand_is_started_again_and_the_stack_goes_on(run):
    for name in ("inference", "worker", "redis"):
        before = _supervised(run, name)
        os.kill(before, signal.SIGKILL)
        _wait(lambda n=name, b=before: _children(run.started_pids()[n])[:1] not in ([], [b]),
              60, f"{name} started again", run.make, run.log)
        assert f"supervise {name}: exited with status 137 unasked; restarting" in run.output()
    # With its workers and its Redis back, the stack still does its job end to end.
    _wait(lambda: _ready(run.url), 90, "/readyz answering 200 again", run.make, run.log)
    key = (run.data / "dev-api-key").read_text().strip()
    photo = (ROOT / "tests" / "data" / "pose_sample.jpg").read_bytes()
    import base64

    answer = httpx.post(run.url + "/v1/requests", headers={"Authorization": f"Key {key}",
                                                           "Prefer": "wait=60"},
                        json={"input": {"image_url": "data:image/jpeg;base64,"
                                        + base64.b64encode(photo).decode()}}, timeout=90)
    assert answer.status_code == 200 and answer.json()["status"] == "COMPLETED", answer.text
    assert run.make.poll() is None  # nothing of this stopped the stack
    os.kill(run.honcho_pid(), signal.SIGTERM)
    assert run.make.wait(60) == 0, run.output()
