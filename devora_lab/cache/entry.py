"""What a cached response looks like on disk, in Redis or in memory: one JSON document.

JSON, never pickle: a cache shared between machines and versions must never run code. The
entry keeps the chunk texts of a streamed answer, so a hit can be replayed as a stream
with the same pieces; a non-streamed answer is replayed in word-sized pieces.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson

from devora_lab.llm.types import Completion, ToolCall, Usage

__all__ = ["CacheEntry", "CorruptEntryError", "decode_entry", "encode_entry"]

ENTRY_VERSION: Final = 1
_PIECES: Final = re.compile(r"\S+\s*|\s+")


class CorruptEntryError(ValueError):
    """A cached value that cannot be decoded (treated as a miss, never an answer)."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A stored answer and what it cost to make."""

    completion: Completion
    chunks: tuple[str, ...]
    created: float

    def replay_chunks(self) -> tuple[str, ...]:
        """The text pieces to stream back: the original chunks, else word-sized pieces."""
        if self.chunks:
            return self.chunks
        return tuple(_PIECES.findall(self.completion.text))


def encode_entry(completion: Completion, chunks: tuple[str, ...] = ()) -> bytes:
    usage = completion.usage
    return orjson.dumps({
        "v": ENTRY_VERSION,
        "created": time.time(),
        "text": completion.text,
        "model": completion.model,
        "requested_model": completion.requested_model,
        "provider": completion.provider,
        "finish_reason": completion.finish_reason,
        "tool_calls": [[c.id, c.name, c.arguments] for c in completion.tool_calls],
        "usage": [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                  usage.cache_creation_input_tokens, usage.reasoning_tokens],
        "cost_usd": completion.cost_usd,
        "cost_status": completion.cost_status,
        "latency_ms": completion.latency_ms,
        "ttft_ms": completion.ttft_ms,
        "response_id": completion.response_id,
        "chunks": list(chunks),
    })


def decode_entry(raw: bytes, *, request_id: str) -> CacheEntry:
    """Decode a stored entry; raises ``CorruptEntryError`` for anything malformed."""
    try:
        doc: dict[str, Any] = orjson.loads(raw)
        if doc.get("v") != ENTRY_VERSION:
            raise CorruptEntryError(f"unknown cache entry version {doc.get('v')!r}")
        usage = Usage(*(int(n) for n in doc["usage"]))
        completion = Completion(
            text=str(doc["text"]), model=str(doc["model"]),
            requested_model=str(doc["requested_model"]), provider=str(doc["provider"]),
            usage=usage, finish_reason=doc["finish_reason"],
            tool_calls=tuple(ToolCall(str(i), str(n), str(a)) for i, n, a in doc["tool_calls"]),
            cost_usd=None if doc["cost_usd"] is None else float(doc["cost_usd"]),
            cost_status=str(doc["cost_status"]), latency_ms=float(doc["latency_ms"]),
            ttft_ms=None if doc["ttft_ms"] is None else float(doc["ttft_ms"]),
            attempts=0, request_id=request_id, response_id=doc["response_id"], cached=True)
        chunks = tuple(str(c) for c in doc["chunks"])
        if chunks and "".join(chunks) != completion.text:
            raise CorruptEntryError("the stored chunks do not add up to the stored text")
        return CacheEntry(completion, chunks, float(doc["created"]))
    except CorruptEntryError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"undecodable cache entry: {exc!r}") from None
