"""An incremental parser for Server-Sent Events, as both providers stream them.

Bytes arrive in arbitrary pieces; ``feed`` returns the events completed so far. Follows the
WHATWG rules that matter here: ``\\n``, ``\\r\\n`` or ``\\r`` line ends, ``:`` comments,
multi-line ``data``, an event ends at a blank line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its ``event`` name (``message`` when none was given) and its data."""

    event: str
    data: str


class SSEDecoder:
    """Turns a byte stream into ``ServerSentEvent`` values."""

    def __init__(self) -> None:
        self._buffer = ""
        self._pending = bytearray()
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return the events they completed."""
        self._pending.extend(chunk)
        try:
            text = self._pending.decode("utf-8")
            self._pending.clear()
        except UnicodeDecodeError as exc:
            # A multi-byte character split across chunks: keep its first bytes for later.
            text = self._pending[: exc.start].decode("utf-8")
            del self._pending[: exc.start]
        self._buffer += text
        events: list[ServerSentEvent] = []
        while True:
            line, found = self._next_line()
            if not found:
                return events
            event = self._process(line)
            if event is not None:
                events.append(event)

    def close(self) -> list[ServerSentEvent]:
        """Flush at the end of the stream: a final event without its blank line counts."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        return events

    def _next_line(self) -> tuple[str, bool]:
        match = _LINE_END.search(self._buffer)
        if match is None:
            return "", False
        if match.group() == "\r" and match.end() == len(self._buffer):
            return "", False  # a CR at the very end may be the first half of a CRLF
        line = self._buffer[: match.start()]
        self._buffer = self._buffer[match.end() :]
        return line, True

    def _process(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data and not self._event:
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
