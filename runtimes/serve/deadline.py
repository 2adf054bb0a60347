"""A whole-header deadline for the HTTP server: a client has ``http.HEADER_DEADLINE_S`` from its request's first byte to
the end of its headers, however it spaces its bytes (the slow-header attack: cheroot's timeout bounds each socket
read, so a client sending a byte every few seconds held a worker for ever, and 33 of them held all 32). A
watchdog shuts the socket of a request past its deadline; cheroot's worker then sees the read fail, drops the
connection and serves the next one. Bodies are not covered: a large STOW-RS may be slow for honest reasons, and
its reads are still bounded by the per-read timeout."""
from __future__ import annotations

import socket
import threading
import time

from cheroot.server import HTTPConnection, HTTPRequest, HTTPServer


class Watchdog(threading.Thread):
    """Holds the sockets now reading a request's headers and shuts each one that passes its deadline."""

    def __init__(self, server: HTTPServer, deadline_s: float, every_s: float = 0.5) -> None:
        super().__init__(name="http-deadline", daemon=True)
        self.server, self.deadline_s, self.every_s = server, deadline_s, every_s
        self.reading: dict[socket.socket, float] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.cut = 0  # requests ended by the deadline, for the log and tests

    def enter(self, sock: socket.socket) -> None:
        with self.lock:
            self.reading[sock] = time.monotonic()

    def leave(self, sock: socket.socket) -> None:
        with self.lock:
            self.reading.pop(sock, None)

    def run(self) -> None:
        while not self.stopped.wait(self.every_s) and self.server.ready:  # ends with its server
            now = time.monotonic()
            with self.lock:
                late = [s for s, began in self.reading.items() if now - began > self.deadline_s]
                for sock in late:
                    del self.reading[sock]
            for sock in late:
                self.cut += 1
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # closed meanwhile by its worker
                    pass


class DeadlineRequest(HTTPRequest):
    """cheroot's request, its start line and headers read under a :class:`Watchdog` (one per server: see
    :func:`install`)."""

    watchdog: Watchdog

    def parse_request(self) -> None:
        self.watchdog.enter(self.conn.socket)
        try:
            super().parse_request()
        finally:
            self.watchdog.leave(self.conn.socket)


def install(server: HTTPServer, deadline_s: float) -> Watchdog:
    """Give a prepared cheroot server the header deadline; returns its watchdog, started (it ends with the server)."""
    watchdog = Watchdog(server, deadline_s)
    request = type("DeadlineRequest", (DeadlineRequest,), {"watchdog": watchdog})
    server.ConnectionClass = type("DeadlineConnection", (HTTPConnection,), {"RequestHandlerClass": request})
    watchdog.start()
    return watchdog
