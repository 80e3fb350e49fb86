"""Turn a question into a prompt-ready context block with numbered citations.

The retriever embeds the query, searches a ``ChunkStore`` and packs the best chunks into
one text block, each headed ``[n] source > heading (lines a-b)`` (the marker is U+203A,
not ``>``) so that a model can cite ``[n]`` and a reader can open the exact lines. The
block is cut to ``max_tokens`` as tiktoken counts the *final* string (separators
included), because per-chunk counts do not add up exactly once chunks are joined; only
whole chunks go in, so a citation never points at half a passage. Each retrieval is
written to the event log (``retrieval``: mode, hits, context tokens, latency, top score).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from numpy.typing import NDArray

from devora_lab.errors import ConfigError
from devora_lab.events.schema import Event, EventKind
from devora_lab.llm.tokens import count_tokens
from devora_lab.rag.store import ChunkStore, Hit, SearchMode

if TYPE_CHECKING:
    from devora_lab.events import EventLog

__all__ = ["Embedder", "Retrieval", "Retriever", "citation", "format_context"]

#: Texts in, an ``(n, d)`` float array out (e.g. ``cache.semantic.HashingEmbedder``).
Embedder = Callable[[Sequence[str]], NDArray[Any]]

_SEPARATOR = "\n\n"
_ARROW = "\u203a"  # the heading-path marker of the citation line


@dataclass(frozen=True)
class Retrieval:
    """The hits that made it into ``context`` (numbered ``[1]``.. in this order), the
    context itself and its tiktoken count."""

    hits: list[Hit]
    context: str
    tokens: int


def citation(number: int, hit: Hit) -> str:
    """``[n] source > heading (lines a-b)``, U+203A in place of ``>``: enough to find
    the passage again."""
    where = f"{hit.source} {_ARROW} {hit.heading}" if hit.heading else hit.source
    return f"[{number}] {where} (lines {hit.start_line}-{hit.end_line})"


def format_context(hits: Sequence[Hit]) -> str:
    """Each hit as its citation line followed by its text, blank-line separated."""
    return _SEPARATOR.join(f"{citation(i, hit)}\n{hit.text}"
                           for i, hit in enumerate(hits, start=1))


class Retriever:
    """Query → ranked, thresholded, token-bounded context over a ``ChunkStore``."""

    def __init__(self, store: ChunkStore, embedder: Embedder, *,
                 event_log: EventLog | None = None, model_for_tokens: str = "gpt-4o") -> None:
        self.store = store
        self.embedder = embedder
        self.event_log = event_log
        self.model_for_tokens = model_for_tokens
        store.bind_embedder(getattr(embedder, "name", None))

    def retrieve(self, query: str, *, top_k: int = 5, mode: SearchMode = "hybrid",
                 threshold: float | None = None,
                 filters: Mapping[str, str | int] | None = None,
                 max_tokens: int | None = None, agent: str | None = None,
                 user_id: str | None = None, session_id: str | None = None) -> Retrieval:
        """The best ``top_k`` chunks for ``query`` as a cited context block.

        ``threshold`` drops hits scoring below it; scores are on the mode's own scale
        (cosine similarity for vector, BM25 for text, RRF ~1/60 for hybrid), so calibrate
        it per mode and per embedder. ``max_tokens`` keeps whole chunks in score order
        while the block still fits and stops at the first that does not. ``agent``,
        ``user_id`` and ``session_id`` tag the retrieval event.
        """
        if not query.strip():
            raise ConfigError("empty query", fix="pass the question to retrieve for")
        if max_tokens is not None and max_tokens < 0:
            raise ConfigError(f"max_tokens must be >= 0, got {max_tokens}",
                              fix="pass a token budget, or None for no limit")
        started = time.perf_counter()
        found = self._retrieve(query, top_k, mode, threshold, filters, max_tokens)
        if self.event_log is not None:
            self.event_log.write(Event(
                kind=EventKind.RETRIEVAL, name=mode, agent=agent, user_id=user_id,
                session_id=session_id, item_count=len(found.hits), input_tokens=found.tokens,
                value=found.hits[0].score if found.hits else None, threshold=threshold,
                latency_ms=(time.perf_counter() - started) * 1000, status="ok"))
        return found

    def _retrieve(self, query: str, top_k: int, mode: SearchMode, threshold: float | None,
                  filters: Mapping[str, str | int] | None,
                  max_tokens: int | None) -> Retrieval:
        vector = self.embedder([query])[0] if mode != "text" else None
        hits = self.store.search(vector=vector, text=query if mode != "vector" else None,
                                 mode=mode, top_k=top_k, filters=filters)
        if threshold is not None:
            hits = [hit for hit in hits if hit.score >= threshold]
        kept: list[Hit] = []
        context, tokens = "", 0
        for hit in hits:
            candidate = format_context([*kept, hit])
            candidate_tokens = count_tokens(candidate, self.model_for_tokens)
            if max_tokens is not None and candidate_tokens > max_tokens:
                break
            kept.append(hit)
            context, tokens = candidate, candidate_tokens
        return Retrieval(hits=kept, context=context, tokens=tokens)
