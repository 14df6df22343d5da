"""``make run`` stops in order on SIGTERM and on Ctrl-C: workers finish, Redis goes last.

Each test starts the real ``make run`` (embedded Redis, gunicorn, the RQ worker, the
inference worker, the clock) with its data in a temporary directory and its own ports,
puts a job in the fast worker's hands, stops the run and reads what it printed.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job, JobStatus

from app import queues
from tests.make_run import ROOT, Run, children, ready, running, supervised, wait_for
from tests.redis_server import free_port

NAMES = ("redis", "web", "worker", "delivery", "retry", "maintenance", "inference", "cron")


@pytest.fixture
def run(tmp_path):
    """``make run`` up and ready (the inference worker has loaded the mediapipe engine)."""
    checkout_data = (ROOT / "data").exists()
    with running(tmp_path) as started:
        yield started
    assert (ROOT / "data").exists() == checkout_data, "make run wrote ./data of the checkout"


def _job_in_progress(run: Run) -> str:
    """Give the fast worker a 2-second job and return its id once the job has started."""
    connection = Redis(host="127.0.0.1", port=run.redis_port)
    job = queues.queue(connection, queues.MAINTENANCE).enqueue("time.sleep", 2)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 30, "the job starting",
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
        wait_for(lambda: _answers(connection), 30, "the restarted Redis answering", server,
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


def test_a_process_killed_by_hand_is_started_again_and_the_stack_goes_on(run):
    for name in ("inference", "worker", "redis"):
        before = supervised(run, name)
        os.kill(before, signal.SIGKILL)
        wait_for(lambda n=name, b=before: children(run.started_pids()[n])[:1] not in ([], [b]),
                 60, f"{name} started again", run.make, run.log)
        assert f"supervise {name}: exited with status 137 unasked; restarting" in run.output()
    # With its workers and its Redis back, the stack still does its job end to end.
    wait_for(lambda: ready(run.url), 90, "/readyz answering 200 again", run.make, run.log)
    key = run.dev_key()
    photo = (ROOT / "tests" / "data" / "pose_sample.jpg").read_bytes()
    answer = httpx.post(run.url + "/v1/requests", headers={"Authorization": f"Key {key}",
                                                           "Prefer": "wait=60"},
                        json={"input": {"image_url": "data:image/jpeg;base64,"
                                        + base64.b64encode(photo).decode()}}, timeout=90)
    assert answer.status_code == 200 and answer.json()["status"] == "COMPLETED", answer.text
    assert run.make.poll() is None  # nothing of this stopped the stack
    os.kill(run.honcho_pid(), signal.SIGTERM)
    assert run.make.wait(60) == 0, run.output()
