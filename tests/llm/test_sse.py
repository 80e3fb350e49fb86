"""The SSE decoder under arbitrary chunking."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from devora_lab.llm.sse import ServerSentEvent, SSEDecoder

STREAM = (
    b"event: message_start\ndata: {\"a\": 1}\n\n"
    b": keep-alive comment\n\n"
    b"event: ping\r\ndata: {}\r\n\r\n"
    b"data: first line\ndata: second line\n\n"
    b"data:no-space\n\n"
    b"data: caf\xc3\xa9 \xe2\x9c\x93\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent("message_start", '{"a": 1}'),
    ServerSentEvent("ping", "{}"),
    ServerSentEvent("message", "first line\nsecond line"),
    ServerSentEvent("message", "no-space"),
    ServerSentEvent("message", "café ✓"),
    ServerSentEvent("message", "[DONE]"),
]


def _decode(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    return events + decoder.close()


def test_whole_stream() -> None:
    assert _decode([STREAM]) == EXPECTED


def test_byte_by_byte() -> None:
    assert _decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted({0, len(STREAM), *cuts})
    pieces = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert _decode(pieces) == EXPECTED


def test_final_event_without_blank_line_is_flushed_on_close() -> None:
    assert _decode([b"data: tail"]) == [ServerSentEvent("message", "tail")]
