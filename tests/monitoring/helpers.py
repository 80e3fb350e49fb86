"""Shared helpers of the alerting tests: events at chosen times, a sink that records, a real
webhook endpoint (``http.server`` on loopback) and a tiny SMTP server (``socketserver``).

The servers are real sockets on 127.0.0.1, so the sinks' own HTTP and SMTP code is what is
tested: retries, timeouts, status handling and what reaches the wire.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from devora_lab.events import Event, EventKind, EventLog
from devora_lab.monitoring.sinks import Notification

#: A Wednesday noon (UTC): the default "now" of the constructed logs.
T0 = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(ts: datetime, *, model: str = "gpt-4o", agent: str = "coder", status: str = "ok",
         cost: float = 0.001, latency_ms: float = 500.0, user: str = "ann",
         **overrides: Any) -> Event:
    """One ``llm.call`` event at ``ts`` (an error when ``status="error"``)."""
    fields: dict[str, Any] = {
        "kind": EventKind.LLM_CALL, "ts": ts, "request_model": model, "response_model": model,
        "provider": "openai", "agent": agent, "user_id": user, "status": status,
        "error_type": "RateLimitError" if status == "error" else None,
        "input_tokens": 100, "output_tokens": 20, "cost_usd": cost, "cost_status": "priced",
        "latency_ms": latency_ms, "attempt": 1, "fallback_index": 0}
    fields.update(overrides)
    return Event(**{name: value for name, value in fields.items() if value is not None})


def calls(count: int, start: datetime, end: datetime, **fields: Any) -> list[Event]:
    """``count`` calls spread evenly over ``[start, end)``."""
    step = (end - start) / max(count, 1)
    return [call(start + step * i, **fields) for i in range(count)]


def write(log: EventLog, events: Iterable[Event]) -> None:
    log.writer().write_many(events)


def alert_rows(log: EventLog) -> list[tuple[Any, ...]]:
    """The ``alert`` events: (name, status, group, repeat), in time order."""
    with log.store() as store:
        return store.rows(
            "SELECT name, status, attributes->>'group', "
            "CAST(attributes->>'repeat' AS BOOLEAN) FROM events WHERE kind = 'alert' "
            "ORDER BY ts, status")


class Recorder:
    """A sink that keeps what it receives (the ``Sink`` protocol)."""

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self._lock = threading.Lock()

    def send(self, note: Notification) -> None:
        with self._lock:
            self.notes.append(note)

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self) -> None:
        return None


# -- a webhook endpoint ------------------------------------------------------------------


@dataclass
class Posted:
    path: str
    body: dict[str, Any]


@dataclass
class HookServer:
    """A local HTTP endpoint answering POSTs with scripted statuses (then ``default``);
    ``hang`` makes it accept and never answer until closed."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    hang: bool = False
    posts: list[Posted] = field(default_factory=list)
    attempts: int = 0
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> HookServer:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook._lock:
                    hook.attempts += 1
                    status = hook.statuses.pop(0) if hook.statuses else hook.default
                if hook.hang:
                    hook._release.wait(10)
                    return
                if status < 300:
                    with hook._lock:
                        hook.posts.append(Posted(self.path, json.loads(raw)))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._release.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [post.body for post in self.posts]


# -- an SMTP server ----------------------------------------------------------------------


class SMTPServer:
    """Speaks enough SMTP for ``smtplib``: EHLO (with AUTH PLAIN), AUTH, MAIL, RCPT, DATA,
    RSET, NOOP, QUIT. ``accept_login=False`` answers AUTH with 535."""

    def __init__(self, *, accept_login: bool = True) -> None:
        self.accept_login = accept_login
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []
        self.auth_attempts = 0
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 localhost ESMTP test")
                while line := self.rfile.readline():
                    verb = line.decode("ascii", "replace").strip().split(" ", 1)
                    if not server.command(self, verb[0].upper(), verb[1] if verb[1:] else ""):
                        return

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])

    def command(self, h: Any, verb: str, arg: str) -> bool:
        if verb == "EHLO":
            h.reply("250-localhost")
            h.reply("250 AUTH PLAIN")
        elif verb == "AUTH":
            self.auth_attempts += 1
            _, _, payload = arg.partition(" ")
            _, user, password = base64.b64decode(payload).decode().split("\0")
            self.logins.append((user, password))
            h.reply("235 accepted" if self.accept_login else "535 bad credentials")
        elif verb == "DATA":
            h.reply("354 go ahead")
            lines = []
            while (line := h.rfile.readline()) not in (b".\r\n", b""):
                lines.append(line[1:] if line.startswith(b"..") else line)
            self.messages.append(message_from_bytes(b"".join(lines)))
            h.reply("250 queued")
        elif verb == "QUIT":
            h.reply("221 bye")
            return False
        elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
            h.reply("250 OK")
        else:
            h.reply("502 not implemented")
        return True

    def __enter__(self) -> SMTPServer:
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


def write_rules(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
