"""A stand-in for fal's queue on 127.0.0.1, speaking fal's real protocol.

Submit, status, result, cancel, storage upload initiate and JWKS over HTTP; after a
delay it POSTs an ED25519-signed callback to the ``fal_webhook`` URL, exactly as fal
signs. It can refuse submits (429/500), hold their answers, drop, duplicate, corrupt, age
or send callbacks before answering the submit, fail requests, lose output images, gzip
its answers, and rotate its signing key.
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.signing import fal as fal_signing
from app.signing.keys import jwks
from tests.redis_server import free_port

KEY = "fal-test-key:secret"
USER_ID = "fal-user-123"


@dataclass
class Job:
    """One request fal holds."""

    id: str
    input: dict[str, Any]
    webhook: str
    status: str = "IN_QUEUE"
    cancelled: bool = False
    output_gone: bool = False  # its output image answers 404


@dataclass
class FalStandIn:
    """Behaviour switches, set by each test before it submits."""

    refuse: list[int] = field(default_factory=list)  # statuses answered to the next submits
    down: bool = False  # every queue call answers 503
    callback: str = "send"  # send | drop | duplicate | corrupt | old | early | error
    delay: float = 0.2
    hold: float = 0  # seconds the answer to a submit is held (fal has the job meanwhile)
    submits: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    jwks_up: bool = True
    gzip: bool = False  # compress answers for callers that accept gzip (as fal's edge does)
    output_gone: bool = False  # the output image of the next jobs answers 404
    jwks_fetches: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)  # headers of every call
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every call
    # Called with the job after an early callback was sent, before the submit is answered.
    before_answer: Callable[[Job], None] | None = None

    def start(self) -> FalStandIn:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, self.wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (connecting is then refused); safe to repeat."""
        self.server.shutdown()
        self.server.server_close()

    def rotate(self) -> None:
        """Sign with a new key from now on (the JWKS serves only the new one)."""
        self.key = Ed25519PrivateKey.generate()

    def result_image(self) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (255, 0, 0)).save(buffer, format="PNG")
        return buffer.getvalue()

    def result_video(self) -> bytes:
        """A 6-frame 64x48 MP4 (made once), the output of every fal-ai/dwpose/video job."""
        if not getattr(self, "_video", None):
            import tempfile
            from pathlib import Path

            from tests.videos import make_video

            with tempfile.TemporaryDirectory() as folder:
                self._video = make_video(Path(folder) / "pose.mp4", frames=6, fps=6,
                                         width=64, height=48).read_bytes()
        return self._video

    def output(self, job: Job) -> dict[str, Any]:
        if "video_url" in job.input:
            return {"video": {"url": f"{self.url}/files/{job.id}.mp4",
                              "content_type": "video/mp4", "file_name": f"{job.id}.mp4",
                              "file_size": len(self.result_video())}}
        size = len(self.result_image())
        name = f"gone-{job.id}" if job.output_gone else job.id
        return {"image": {"url": f"{self.url}/files/{name}.png", "content_type": "image/png",
                          "file_name": f"{job.id}.png", "file_size": size, "width": 64,
                          "height": 48}}

    def body_for(self, job: Job) -> bytes:
        if self.callback == "error":
            body = {"request_id": job.id, "gateway_request_id": job.id, "status": "ERROR",
                    "error": "Invalid status code: 422",
                    "payload": {"detail": [{"loc": ["body", "image_url"],
                                            "msg": "could not load image", "type": "value"}]}}
        else:
            body = {"request_id": job.id, "gateway_request_id": job.id, "status": "OK",
                    "payload": self.output(job)}
        return json.dumps(body).encode()

    def send_callback(self, job: Job) -> list[int]:
        """POST the signed callback(s) the current mode asks for; return the statuses."""
        job.status = "COMPLETED"
        if self.callback == "drop":
            return []
        body = self.body_for(job)
        now = time.time() - (600 if self.callback == "old" else 0)
        headers = fal_signing.sign(self.key, job.id, USER_ID, body, now=now)
        if self.callback == "corrupt":
            headers[fal_signing.HEADER_SIGNATURE] = "ab" * 64
        headers["Content-Type"] = "application/json"
        times = 2 if self.callback == "duplicate" else 1
        return [httpx.post(job.webhook, content=body, headers=headers, timeout=10).status_code
                for _ in range(times)]

    def wsgi(self, environ, start_response):
        request = Request(environ)
        response = self.route(request)
        if self.gzip and "gzip" in request.headers.get("Accept-Encoding", ""):
            response.set_data(gzip.compress(response.get_data()))
            response.headers["Content-Encoding"] = "gzip"
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        self.seen.append(dict(request.headers.items()))
        self.calls.append((request.method, request.path))
        path = request.path.strip("/").split("/")
        if request.path == "/.well-known/jwks.json":
            self.jwks_fetches += 1
            if not self.jwks_up:
                return Response("down", status=503)
            return _json(jwks(self.key.public_key()))
        if path[0] == "files":
            if path[-1].startswith("gone-"):
                return _json({"detail": "Not found"}, 404)
            if path[-1].endswith(".mp4"):
                return Response(self.result_video(), mimetype="video/mp4")
            return Response(self.result_image(), mimetype="image/png")
        if self.down:
            return _json({"detail": "Service Unavailable"}, 503)
        if request.headers.get("Authorization") != f"Key {KEY}":
            return _json({"detail": "Unauthorized"}, 401)
        if path == ["storage", "upload", "initiate"] and request.method == "POST":
            name = (request.get_json(silent=True) or {}).get("file_name", "upload")
            return _json({"upload_url": f"{self.url}/uploads/{uuid.uuid4()}",
                          "file_url": f"{self.url}/files/{name}"})
        if path[:2] != ["fal-ai", "dwpose"]:
            return _json({"detail": "Application not found"}, 404)
        rest = path[2:]
        if rest in ([], ["video"]) and request.method == "POST":
            return self.submit(request)
        job = self.jobs.get(rest[1]) if len(rest) >= 2 and rest[0] == "requests" else None
        if job is None:
            return _json({"detail": "Request not found"}, 404)
        if rest[2:] == ["status"]:
            return _json({"status": job.status, "request_id": job.id, "logs": []})
        if rest[2:] == ["cancel"] and request.method == "PUT":
            if job.status == "COMPLETED":
                return _json({"status": "ALREADY_COMPLETED"}, 400)
            job.cancelled = True
            return _json({"status": "CANCELLATION_REQUESTED"}, 202)
        if not rest[2:]:
            if job.status != "COMPLETED":
                return _json({"detail": "Request is still in progress"}, 400)
            if self.callback == "error":
                return _json(json.loads(self.body_for(job))["payload"], 422)
            return _json(self.output(job))
        return _json({"detail": "Not found"}, 404)

    def submit(self, request: Request) -> Response:
        self.submits.append({"input": request.get_json(), "webhook": request.args["fal_webhook"]})
        if self.refuse:
            return _json({"detail": "try later"}, self.refuse.pop(0))
        job = Job(id=str(uuid.uuid4()), input=request.get_json(),
                  webhook=request.args["fal_webhook"], output_gone=self.output_gone)
        self.jobs[job.id] = job
        if self.callback == "early":
            self.callback = "send"
            self.send_callback(job)  # before the submit's answer leaves
            if self.before_answer is not None:
                self.before_answer(job)
        else:
            def later() -> None:
                time.sleep(self.delay)
                if not job.cancelled:
                    try:
                        self.send_callback(job)
                    except httpx.HTTPError:
                        pass  # the test that wanted it is over

            threading.Thread(target=later, daemon=True).start()
        time.sleep(self.hold)
        base = f"{self.url}/fal-ai/dwpose/requests/{job.id}"
        return _json({"request_id": job.id, "response_url": base, "status_url": base + "/status",
                      "cancel_url": base + "/cancel"})


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
