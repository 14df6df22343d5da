"""The inference worker: loads the engine once, then runs ``jobs.infer`` in-process.

``python -m jobs.worker`` — a SimpleWorker (``app.store.rq_worker``: no fork per job), so
the model stays warm; a heartbeat in Redis tells ``/readyz`` which engine this worker loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from rq.serializers import JSONSerializer

from app import queues
from app.services import current
from app.store import workers
from app.store.rq_worker import LeanWorker

HEARTBEAT_SECONDS = 10


def _beat(name: str, engine: str, stop: threading.Event) -> None:
    """Refresh this worker's heartbeat until stopped (expires 3 beats after a crash)."""
    svc = current()
    while not stop.is_set():
        try:
            workers.beat(svc.redis, name, engine, HEARTBEAT_SECONDS * 3)
        except Exception:  # noqa: BLE001 - Redis blips must not kill the worker
            logging.getLogger(__name__).warning("heartbeat failed", exc_info=True)
        stop.wait(HEARTBEAT_SECONDS)


def main() -> None:
    """Preload the engine, then work the inference queue until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    svc = current()
    engine = svc.engine
    name = f"inference-{socket.gethostname()}-{os.getpid()}"
    warm = getattr(engine, "warm", None)
    if warm is not None:
        warm()  # sessions run once now, so the first job pays no start-up
    logging.getLogger(__name__).info("engine %s %s loaded%s", engine.name, engine.version,
                                     "" if warm is None else " and warmed")
    stop = threading.Event()
    threading.Thread(target=_beat, args=(name, f"{engine.name}:{engine.version}", stop),
                     daemon=True).start()
    # A restart inside the old scheduler lock's minute cannot take the lock at start; RQ
    # tries again at each maintenance pass, so make that a minute rather than ten.
    worker = LeanWorker([queues.queue(svc.rq, name) for name in queues.INFERENCE_QUEUES],
                          connection=svc.rq,
                          serializer=JSONSerializer, name=name,
                          maintenance_interval=queues.MAINTENANCE_INTERVAL)
    try:
        worker.work(with_scheduler=True)
    finally:
        stop.set()
        workers.forget(svc.redis, name)


if __name__ == "__main__":
    main()
