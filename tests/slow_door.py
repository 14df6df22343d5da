"""A TCP door in front of a server: connecting times out until it is opened, then it relays.

While shut, the door's accept queue is full, so the kernel drops a client's SYN and the
client's connect times out (a real ConnectTimeout: the call never reached the server).
Once opened, every connection is accepted and relayed to the server behind it.
``PartGate`` relays at once but holds a multipart part's upload to S3 until it is released.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable


class SlowDoor:
    """Listens on 127.0.0.1; relays to ``127.0.0.1:target_port`` once :meth:`open` is called."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)  # room for one connection, which the filler takes
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        self.opened = threading.Event()

    def open(self) -> None:
        """Start accepting and relaying."""
        self.opened.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        """Close the door (connections being relayed end when either side closes)."""
        self.filler.close()
        self.listener.close()

    def _accept(self) -> None:
        serve(self.listener, self.target_port)


def serve(listener: socket.socket, target_port: int,
          hold: Callable[[bytes], None] | None = None) -> None:
    """Accept and relay every connection until the listener is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # stopped
        relay(client, target_port, hold)


def relay(client: socket.socket, target_port: int,
          hold: Callable[[bytes], None] | None = None) -> None:
    """Relay a connection to ``127.0.0.1:target_port`` both ways; ``hold`` sees each chunk
    the client sends before it goes on (and may wait)."""
    try:
        server = socket.create_connection(("127.0.0.1", target_port), timeout=5)
    except OSError:
        client.close()
        return
    for source, sink, seen in ((client, server, hold), (server, client, None)):
        threading.Thread(target=_pump, args=(source, sink, seen), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket,
          hold: Callable[[bytes], None] | None = None) -> None:
    """Copy bytes one way until either side closes."""
    try:
        source.settimeout(None)
        while chunk := source.recv(65536):
            if hold is not None:
                hold(chunk)
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)  # wakes the pump of the other direction
            except OSError:
                pass
            end.close()


class PartGate:
    """A relay in front of the S3 server that holds every upload of a multipart part
    (``PUT …/.parts/…``) until :meth:`release`: a storage write still on its way, for as long
    as a test needs, with the real S3 client and server on either side."""

    HELD = re.compile(rb"^PUT [^ ]*/\.parts/", re.M)

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.arrived = threading.Event()  # a part's upload reached the gate and is held
        self.opened = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=serve, args=(self.listener, target_port, self._hold),
                         daemon=True).start()

    def release(self) -> None:
        """Let held uploads (and every later one) through."""
        self.opened.set()

    def stop(self) -> None:
        """Release what is held and stop relaying."""
        self.release()
        self.listener.close()

    def _hold(self, chunk: bytes) -> None:
        if not self.opened.is_set() and self.HELD.search(chunk):
            self.arrived.set()
            self.opened.wait(120)  # a bound, so a failing test cannot hang the run

