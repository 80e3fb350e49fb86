"""Semantic response cache: a stored answer also serves a request that means the same.

After an exact miss, the index finds the most similar stored request of the same scope
(provider, model, every parameter: ``scope_key``) and returns its exact key if the cosine
of their embeddings reaches a threshold. A false hit answers a different question, so the
threshold is measured on labelled pairs (``calibrate``), not guessed. The index is
in-process, rebuilt by each process; the entries it points to live in the shared backend,
which may have dropped them (then it is a plain miss). Imports numpy and pandas: load it
only when semantic caching is on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import orjson
import pandas as pd
from numpy.typing import NDArray

from devora_lab.cache.analysis import embed_texts
from devora_lab.cache.keys import cache_key

if TYPE_CHECKING:
    import altair as alt

    from devora_lab.llm.types import MessageLike

__all__ = ["Calibration", "Embedder", "HashingEmbedder", "SemanticIndex", "SemanticMatch",
           "calibrate", "conversation_text", "load_pairs", "scope_key", "semantic_parts"]

Vector = NDArray[np.float32]

# Slack on similarity >= threshold (as in analysis): float32 round-off must not turn a text
# identical to a stored one into a miss at threshold 1.0.
EPSILON: Final = 1e-6
# 0.50-0.98 by 0.01, then finer near 1, where a bag-of-words embedder does most of its work.
DEFAULT_THRESHOLDS: Final = (*(round(0.5 + 0.01 * i, 2) for i in range(49)),
                             0.99, 0.995, 0.999, 1.0)
_INITIAL_ROWS: Final = 8


class Embedder(Protocol):
    """Texts to an ``(n, d)`` array, rows L2-normalised (re-normalised here anyway:
    sentence-transformers does not normalise unless asked)."""

    def __call__(self, texts: Sequence[str]) -> NDArray[np.floating[Any]]: ...


@dataclass(frozen=True, slots=True)
class HashingEmbedder:
    """Hashed words and character trigrams (``analysis.embed_texts``): offline, no model.

    It measures word and character overlap, not meaning. Casing, whitespace and
    punctuation are dropped (so ``/`` vs ``//``, ``userID`` vs ``UserID`` or a re-indented
    Python block score 1.0), sentence order barely counts, a true paraphrase scores low,
    and one changed number or name in a long request still scores high. For paraphrases
    plug in a sentence-embedding model (e.g. the local all-MiniLM-L6-v2 planned for RAG)
    and calibrate again: thresholds do not carry over between embedders.
    """

    dim: int = 2048

    def __post_init__(self) -> None:
        _check_positive("dim", self.dim)

    def __call__(self, texts: Sequence[str]) -> Vector:
        return embed_texts(texts, dim=self.dim)


def conversation_text(messages: Sequence[MessageLike]) -> str:
    """The text a semantic match compares: ``role: content`` per message, tool calls as
    ``role calls name(arguments)``.

    Stable across runs: tool-call ids are left out (random, meaningless), JSON arguments
    are re-serialised with sorted keys, and a non-text part (image, audio, file) becomes
    its type and a digest of its content rather than being dropped.
    """
    lines: list[str] = []
    for message in messages:
        head = str(message.get("role") or "")
        if message.get("name"):
            head = f"{head} ({message.get('name')})"
        content = _content_text(message.get("content"))
        if content:
            lines.append(f"{head}: {content}")
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            lines.append(f"{head} calls {function.get('name', '')}"
                         f"({_arguments(function.get('arguments'))})")
    return "\n".join(lines)


def scope_key(provider: str, model: str, params: Mapping[str, Any], *,
              namespace: str = "default", context: Sequence[MessageLike] = ()) -> str:
    """What a semantic hit must match exactly: provider, model, every parameter that can
    change the answer (normalised as ``cache_key`` does), the namespace, and ``context``.

    Pass ``context`` from ``semantic_parts`` so that the system prompt and earlier turns
    must be equal and only the new question is compared: compared whole, a long shared
    system prompt dominates the embedding and different questions score about 0.99.
    """
    return cache_key(provider, model, list(context), params, namespace=namespace).full


def semantic_parts(messages: Sequence[MessageLike]
                   ) -> tuple[list[MessageLike], MessageLike] | None:
    """``(context, question)``: the messages to key exactly and the final user message to
    compare; None when the request must be matched exactly only: it does not end with a
    user message (a tool result is data, where one changed number changes the answer) or
    it has a non-text part (the embedder does not see images, audio or files)."""
    if not messages or messages[-1].get("role") != "user":
        return None
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and not all(
                isinstance(part, Mapping) and part.get("type") == "text" for part in content):
            return None
    return list(messages[:-1]), messages[-1]


def _content_text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = content if isinstance(content, list) else [content]
    return "\n".join(
        str(part.get("text", "")) if isinstance(part, Mapping) and part.get("type") == "text"
        else f"[{part.get('type') if isinstance(part, Mapping) else 'part'} "
             f"{hashlib.sha256(_json(part).encode()).hexdigest()[:16]}]"
        for part in parts)


def _arguments(arguments: Any) -> str:
    if not isinstance(arguments, str):
        return _json(arguments)
    try:
        return _json(orjson.loads(arguments))
    except orjson.JSONDecodeError:
        return arguments


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=repr).decode()


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """The exact key (``CacheKey.full``) of the nearest stored request, and its cosine."""

    key: str
    similarity: float


class _Scope:
    """Unit vectors in the rows of one matrix; ``rows`` maps keys to rows, oldest first.
    Emptied rows are zero (cosine 0: never a match) and reused; capacity doubles up to
    ``limit``, so small scopes stay small."""

    def __init__(self, dim: int, limit: int) -> None:
        self.vectors: Vector = np.zeros((min(_INITIAL_ROWS, limit), dim), dtype=np.float32)
        self.keys: list[str | None] = [None] * len(self.vectors)
        self.rows: OrderedDict[str, int] = OrderedDict()
        self.free = list(range(len(self.keys)))[::-1]
        self.limit = limit

    def add(self, vector: Vector, key: str) -> None:
        row = self.rows.pop(key, None)  # a re-stored key is updated and becomes the newest
        if row is None:
            if len(self.rows) >= self.limit:
                self.discard(next(iter(self.rows)))  # FIFO: the oldest makes room
            elif not self.free:
                old = len(self.keys)
                new = min(2 * old, self.limit)
                self.vectors = np.concatenate(
                    [self.vectors, np.zeros((new - old, self.vectors.shape[1]), np.float32)])
                self.keys += [None] * (new - old)
                self.free = list(range(new - 1, old - 1, -1))
            row = self.free.pop()
        self.vectors[row], self.keys[row], self.rows[key] = vector, key, row

    def discard(self, key: str) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        self.vectors[row], self.keys[row] = 0.0, None
        self.free.append(row)
        return True


class SemanticIndex:
    """Per scope, the embeddings of stored requests and their exact keys; thread-safe.

    ``nearest`` returns the most similar stored request if its cosine is at least
    ``threshold``. A scope keeps its newest ``max_entries_per_scope`` requests (FIFO); the
    least recently used scope beyond ``max_scopes`` is dropped, which bounds memory at
    ``max_scopes * max_entries_per_scope * d * 4`` bytes (80 MB per full scope at d=2048).
    Embedding runs outside the lock (the embedder must be safe to call from several
    threads); only the matrix work is serialised.
    """

    def __init__(self, embedder: Embedder, threshold: float = 0.95,
                 max_entries_per_scope: int = 10_000, max_scopes: int = 1_000) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
        self.embedder = embedder
        self.threshold = float(threshold)
        self.max_entries_per_scope = _check_positive("max_entries_per_scope",
                                                     max_entries_per_scope)
        self.max_scopes = _check_positive("max_scopes", max_scopes)
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, text: str) -> Vector:
        """The unit vector of ``text``: compute it once per request and pass it to both
        ``nearest`` and, after a miss, ``add``."""
        vector: Vector = _unit(self.embedder([text]))[0]
        return vector

    def add(self, scope: str, text: str, exact_key_full: str, *,
            vector: Vector | None = None) -> None:
        """Remember that the answer to ``text`` in ``scope`` is stored under ``exact_key_full``."""
        row = self.embed(text) if vector is None else _unit(np.atleast_2d(vector))[0]
        with self._lock:
            entries = self._scopes.get(scope)
            if entries is None:
                entries = self._scopes[scope] = _Scope(len(row), self.max_entries_per_scope)
                while len(self._scopes) > self.max_scopes:
                    self._scopes.popitem(last=False)
            self._scopes.move_to_end(scope)
            _check_dim(entries, row)
            entries.add(row, exact_key_full)

    def nearest(self, scope: str, text: str, *,
                vector: Vector | None = None) -> SemanticMatch | None:
        """The most similar stored request of ``scope`` if its cosine is >= threshold."""
        query = self.embed(text) if vector is None else _unit(np.atleast_2d(vector))[0]
        with self._lock:
            entries = self._scopes.get(scope)
            if entries is None or not entries.rows:
                return None
            self._scopes.move_to_end(scope)
            _check_dim(entries, query)
            sims = entries.vectors @ query
            row = int(np.argmax(sims))
            key, similarity = entries.keys[row], float(sims[row])
        if key is None or similarity < self.threshold - EPSILON:
            return None
        return SemanticMatch(key, min(similarity, 1.0))

    def discard(self, scope: str, exact_key_full: str) -> bool:
        """Forget a key, e.g. when the backend no longer holds its entry."""
        with self._lock:
            entries = self._scopes.get(scope)
            return entries is not None and entries.discard(exact_key_full)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(entries.rows) for entries in self._scopes.values())


def _unit(rows: NDArray[Any]) -> Vector:
    out: Vector = np.array(rows, dtype=np.float32)  # a copy: callers' arrays stay as given
    if out.ndim != 2:
        raise ValueError(f"an embedder must return an (n, d) array, not shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


def _check_dim(entries: _Scope, row: Vector) -> None:
    if len(row) != entries.vectors.shape[1]:
        raise ValueError(f"embedding has {len(row)} dimensions, the index "
                         f"{entries.vectors.shape[1]}: was the embedder changed?")


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class Calibration:
    """How each threshold does on labelled pairs.

    ``scores``: one row per pair (``a``, ``b``, ``same``, ``similarity``). ``curve``: per
    ``threshold``, ``predicted_positives`` (pairs at or above it: would be hits),
    ``true_positives``, ``false_positives``, ``precision`` (NaN with no predicted
    positive) and ``recall``.
    """

    scores: pd.DataFrame
    curve: pd.DataFrame

    def recommend(self, target_precision: float = 0.99) -> float | None:
        """The lowest threshold among those of highest recall whose precision reaches the
        target; None when no threshold reaches it on these pairs."""
        if not 0.0 < target_precision <= 1.0:
            raise ValueError(f"target_precision must be in (0, 1], not {target_precision!r}")
        ok = self.curve[(self.curve["predicted_positives"] > 0)
                        & (self.curve["precision"] >= target_precision - 1e-12)]
        if ok.empty:
            return None
        return float(ok.sort_values(["recall", "threshold"], ascending=[False, True])
                     ["threshold"].iloc[0])

    def chart(self) -> alt.Chart:
        """Precision and recall against threshold, an altair line chart."""
        import altair as alt

        long = self.curve.melt(id_vars="threshold", value_vars=["precision", "recall"],
                               var_name="metric", value_name="value")
        chart: alt.Chart = alt.Chart(long, title="Semantic cache: precision, recall").mark_line(
            point=True).encode(x=alt.X("threshold:Q", scale=alt.Scale(zero=False)),
                               y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
                               color="metric:N", tooltip=["threshold", "metric", "value"])
        return chart


def calibrate(pairs: Sequence[tuple[str, str, bool]], embedder: Embedder,
              thresholds: Sequence[float] | None = None) -> Calibration:
    """Score labelled pairs (text A, text B, "the same answer is acceptable") and measure
    precision and recall of ``similarity >= threshold`` at each threshold.

    Give the texts as the index will see them (``conversation_text`` of the compared
    messages): the role prefix raises every similarity a little, and so the threshold.
    """
    if not pairs:
        raise ValueError("calibrate needs at least one labelled pair")
    a, b = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    same = np.array([bool(pair[2]) for pair in pairs], dtype=bool)
    vectors = _unit(embedder(a + b))
    sims = np.clip(np.einsum("ij,ij->i", vectors[:len(a)], vectors[len(a):]), -1.0, 1.0)
    positives, rows = int(same.sum()), []
    for threshold in sorted(DEFAULT_THRESHOLDS if thresholds is None else thresholds):
        hit = sims >= threshold - EPSILON
        tp, fp = int((hit & same).sum()), int((hit & ~same).sum())
        rows.append({"threshold": float(threshold), "predicted_positives": tp + fp,
                     "true_positives": tp, "false_positives": fp,
                     "precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "recall": tp / positives if positives else float("nan")})
    scores = pd.DataFrame({"a": a, "b": b, "same": same, "similarity": sims.astype(float)})
    return Calibration(scores, pd.DataFrame(rows))


def load_pairs(path: str | Path) -> list[tuple[str, str, bool]]:
    """Labelled pairs from JSON lines ``{"a": str, "b": str, "same": bool, ...}``."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        a, b, same = record.get("a"), record.get("b"), record.get("same")
        if not (isinstance(a, str) and isinstance(b, str) and isinstance(same, bool)):
            raise ValueError(f"{path}:{number}: needs string 'a' and 'b', boolean 'same'")
        pairs.append((a, b, same))
    return pairs
