"""A webhook sink: a real HTTP server on 127.0.0.1 that records requests and answers a script."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Received:
    """One request the sink got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: str = ""


@dataclass
class Sink:
    """Answers from ``script`` in order, then ``default``: (status, headers, body, delay).

    An optional fifth item paces the body: seconds between its bytes (a trickling answer).
    ``on_request`` runs with each request before the answer, while the sender waits.
    """

    script: list[tuple] = field(default_factory=list)
    default: tuple = (204, {}, b"", 0)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    on_request: Callable[[Received], None] | None = None
    host: str = "127.0.0.1"

    def start(self) -> Sink:
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                got = Received(self.path, dict(self.headers.items()), body, time.time(),
                               self.client_address[0])
                sink.received.append(got)
                if sink.on_request is not None:
                    sink.on_request(got)
                status, headers, answer, delay, *pace = (sink.script.pop(0) if sink.script
                                                         else sink.default)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    if not pace:
                        self.wfile.write(answer)
                    for i in range(len(answer) if pace else 0):
                        self.wfile.write(answer[i:i + 1])
                        self.wfile.flush()
                        time.sleep(pace[0])
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{self.host}:{self.server.server_address[1]}/hook"
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_photo(data: bytes, delay: float = 0.0, before: Callable[[], None] | None = None,
                host: str = "127.0.0.1") -> tuple[http.server.HTTPServer, str]:
    """Serve ``data`` as a JPEG on ``host`` after ``delay`` s (``before`` runs first, while
    the downloader waits); return the server and the photo's URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            server.peers.append(self.client_address[0])
            if before is not None:
                before()
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.peers = []  # who fetched the photo
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/photo.jpg"
