"""A TCP door in front of a server: connecting times out until it is opened, then it relays.

While shut, the door's accept queue is full, so the kernel drops a client's SYN and the
client's connect times out (a real ConnectTimeout: the call never reached the server).
Once opened, every connection is accepted and relayed to the server behind it.
"""

from __future__ import annotations

import socket
import threading


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
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        source.settimeout(None)
        while chunk := source.recv(65536):
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
