"""HTTP/1.1 plumbing of the simulator, on the standard library's ``ThreadingHTTPServer``.

Why the standard library: no dependency, and one thread per keep-alive connection is
enough for the ~1,000+ requests/s a client test needs on two cores. Three details make it
fast and faithful:

* every answer is written with one ``sendall`` (status line, headers and body together)
  and ``TCP_NODELAY`` is set, so keep-alive requests never stall on Nagle + delayed ACK;
* streams use chunked transfer encoding, buffered between pauses, so a zero-latency stream
  is one write while a paced one flushes at every token;
* faults happen at the socket: a body shorter than its ``content-length``, a chunked
  stream that ends without its last chunk, a TCP RST (``SO_LINGER`` 0) with no answer.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

__all__ = ["ChunkedWriter", "Exchange", "SimHTTPServer"]

MAX_BODY: Final = 64 * 1024 * 1024
_REASONS: Final = {529: "Overloaded"}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _REASONS.get(status, "Unknown")


class Exchange:
    """One request read from a connection, and the ways to answer it."""

    def __init__(self, handler: _Handler, body: bytes) -> None:
        self._handler = handler
        self.method = handler.command
        self.path = handler.path.split("?", 1)[0]
        self.body = body

    def header(self, name: str) -> str | None:
        return self._handler.headers.get(name)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` (nothing at 0); True if the server is stopping meanwhile."""
        if seconds <= 0:
            return self._handler.server.stopping.is_set()
        return self._handler.server.stopping.wait(seconds)

    def head(self, status: int, headers: Mapping[str, str], *, length: int | None) -> bytes:
        """Status line and headers; ``length`` None means a chunked body."""
        lines = [f"HTTP/1.1 {status} {_reason(status)}",
                 f"date: {email.utils.formatdate(usegmt=True)}", "server: devora-sim"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        lines.append(f"content-length: {length}" if length is not None
                     else "transfer-encoding: chunked")
        if self._handler.close_connection:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """A complete answer, in one write."""
        self.write(self.head(status, headers, length=len(body)) + body)

    def send_truncated(self, status: int, headers: Mapping[str, str], body: bytes,
                       keep: int) -> None:
        """Announce all of ``body`` but send only ``keep`` bytes, then close."""
        self._handler.close_connection = True
        self.write(self.head(status, headers, length=len(body)) + body[:keep])

    def stream(self, status: int, headers: Mapping[str, str]) -> ChunkedWriter:
        return ChunkedWriter(self, self.head(status, headers, length=None))

    def reset(self) -> None:
        """Drop the connection with a TCP RST and no answer at all."""
        self._handler.reset_on_finish = True
        self._handler.close_connection = True

    def close_after(self) -> None:
        self._handler.close_connection = True

    def write(self, data: bytes) -> None:
        self._handler.wfile.write(data)


class ChunkedWriter:
    """A chunked response body: data is buffered until ``flush``, ``end`` or ``abort``."""

    def __init__(self, exchange: Exchange, head: bytes) -> None:
        self._exchange = exchange
        self._out = bytearray(head)
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        self._pending += data

    def flush(self) -> None:
        if self._pending:
            self._out += b"%x\r\n" % len(self._pending) + self._pending + b"\r\n"
            self._pending.clear()
        if self._out:
            self._exchange.write(bytes(self._out))
            self._out.clear()

    def end(self) -> None:
        """Send the rest and the terminating chunk: a well-formed end of stream."""
        self.flush()
        self._exchange.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Send what is buffered, then close without the terminating chunk."""
        self.flush()
        self._exchange.close_after()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devora-sim/1"
    disable_nagle_algorithm = True
    server: SimHTTPServer
    reset_on_finish = False

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            if self.reset_on_finish:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            super().finish()
            if self.reset_on_finish:
                self.connection.close()  # the last reference: the kernel sends an RST
        except OSError:
            pass
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            if body is None:
                return
            self.server.app(Exchange(self, body))
        except OSError:  # the client went away (timeout, reset, closed early)
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self.send_error(413 if length > MAX_BODY else 400)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: request lines are not worth a log, and headers may carry keys."""


class SimHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that hands each request to ``app`` and stops promptly."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: Callable[[Exchange], None]) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open connection so that idle keep-alive threads end."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        """Connection errors are the clients' business (and our injected faults)."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]
