"""A LanceDB table of chunks and their vectors: vector, full-text and hybrid search.

LanceDB runs in-process on a folder (no server), so a project's index is a directory that
travels with the workspace. One row per chunk; the chunk fields are real columns so that
they can be filtered in SQL, and ``file_hash`` (a digest of the whole source file, taken
from ``chunk.metadata["file_hash"]``) lets an indexer skip files that did not change.

The table is created on the first ``add``, because the vector width is only known then.
The native full-text index (``use_tantivy=False`` semantics: no extra dependency) is
rebuilt lazily before the first text or hybrid search after a change, so bulk adds do not
pay for it once per batch. Hybrid search fuses the vector and text rankings with
reciprocal-rank fusion, which needs no score calibration between the two.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS
from lancedb.rerankers import RRFReranker
from numpy.typing import NDArray

from devora_lab.errors import ConfigError
from devora_lab.rag.chunking import Chunk

__all__ = ["FILTER_COLUMNS", "ChunkStore", "Hit", "SearchMode", "build_where"]

SearchMode = Literal["vector", "text", "hybrid"]
_MODES: Final = ("vector", "text", "hybrid")
_METRICS: Final = ("cosine", "l2", "dot")
_STRING_COLUMNS: Final = ("text", "source", "title", "heading", "content_hash", "file_hash")
_INT_COLUMNS: Final = ("position", "start_line", "end_line", "tokens")
#: Columns ``search(filters=...)`` accepts; anything else is rejected, never interpolated.
FILTER_COLUMNS: Final = frozenset(_STRING_COLUMNS + _INT_COLUMNS)


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, with ``score`` (higher is better, comparable only
    within one mode: 1 - cosine distance, BM25 for text, RRF for hybrid)."""

    text: str
    source: str
    title: str | None
    heading: str | None
    position: int
    start_line: int
    end_line: int
    tokens: int
    content_hash: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_chunk(self) -> Chunk:
        """The stored chunk without its score, e.g. to re-embed it."""
        return Chunk(text=self.text, source=self.source, title=self.title,
                     heading=self.heading, position=self.position,
                     start_line=self.start_line, end_line=self.end_line, tokens=self.tokens,
                     content_hash=self.content_hash, metadata=dict(self.metadata))


def _schema(dim: int) -> pa.Schema:
    fields = [pa.field(name, pa.string()) for name in _STRING_COLUMNS]
    fields += [pa.field(name, pa.int64()) for name in _INT_COLUMNS]
    fields += [pa.field("metadata", pa.string()),
               pa.field("vector", pa.list_(pa.float32(), dim))]
    return pa.schema(fields)


def _quote(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigError(f"filter value {value!r} is not a str or int",
                          fix="filter on strings or integers; use where= for anything else")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def build_where(filters: Mapping[str, str | int]) -> str | None:
    """An SQL predicate ANDing ``column = value``: values quoted, columns checked against
    ``FILTER_COLUMNS`` so that untrusted filter input cannot inject SQL."""
    parts: list[str] = []
    for column, value in filters.items():
        if column not in FILTER_COLUMNS:
            raise ConfigError(f"unknown filter column {column!r}",
                              fix=f"use one of {sorted(FILTER_COLUMNS)}")
        parts.append(f"{column} = {_quote(value)}")
    return " AND ".join(parts) or None


class ChunkStore:
    """Chunks and vectors in one LanceDB table under ``folder``."""

    def __init__(self, folder: Path, *, table: str = "chunks",
                 metric: str = "cosine") -> None:
        if metric not in _METRICS:
            raise ConfigError(f"unknown metric {metric!r}", fix=f"use one of {_METRICS}")
        if not table:
            raise ConfigError("empty table name", fix="pass a table name, e.g. 'chunks'")
        self.folder = Path(folder)
        self.table_name = table
        self.metric = metric
        self._db: Any = lancedb.connect(self.folder)
        self._table: Any = None
        # open_table, not list_tables (whose shape changed across lancedb versions); a
        # missing table is created by the first add(), once the vector width is known
        with contextlib.suppress(ValueError):
            self._table = self._db.open_table(table)
        self._fts_fresh = False

    def add(self, chunks: Sequence[Chunk], vectors: NDArray[Any]) -> int:
        """Store ``chunks`` with their row-aligned ``vectors``; returns the rows added."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(chunks):
            raise ConfigError(f"vectors of shape {array.shape} for {len(chunks)} chunks",
                              fix="pass one row per chunk: shape (len(chunks), dim)")
        if not chunks:
            return 0
        if self._table is None:
            self._table = self._db.create_table(self.table_name, schema=_schema(array.shape[1]))
        elif array.shape[1] != self._dim():
            raise ConfigError(f"vectors have {array.shape[1]} dimensions, the table "
                              f"{self._dim()}", fix="embed with the model the index was built with")
        rows = [{"text": c.text, "source": c.source, "title": c.title, "heading": c.heading,
                 "content_hash": c.content_hash, "file_hash": str(c.metadata.get("file_hash", "")),
                 "position": c.position, "start_line": c.start_line, "end_line": c.end_line,
                 "tokens": c.tokens, "metadata": json.dumps(dict(c.metadata), default=str,
                                                            sort_keys=True),
                 "vector": vec} for c, vec in zip(chunks, array, strict=True)]
        self._table.add(pa.Table.from_pylist(rows, schema=self._table.schema))
        self._fts_fresh = False
        return len(rows)

    def delete_source(self, source: str) -> int:
        """Remove every chunk of ``source`` (before re-indexing it); returns rows deleted."""
        if self._table is None:
            return 0
        result = self._table.delete(f"source = {_quote(source)}")
        self._fts_fresh = False
        return int(result.num_deleted_rows)

    def sources(self) -> dict[str, str]:
        """Each stored source and its ``file_hash``: an indexer compares these with the
        files on disk and re-embeds only the ones whose hash changed."""
        if self._table is None or self.count() == 0:
            return {}
        table = (self._table.search().select(["source", "file_hash"])
                 .limit(self.count()).to_arrow())
        return dict(zip(table["source"].to_pylist(), table["file_hash"].to_pylist(),
                        strict=True))

    def count(self) -> int:
        """Rows (chunks) stored."""
        return 0 if self._table is None else int(self._table.count_rows())

    def search(self, *, vector: NDArray[Any] | None = None, text: str | None = None,
               mode: SearchMode = "vector", top_k: int = 10, where: str | None = None,
               filters: Mapping[str, str | int] | None = None) -> list[Hit]:
        """The ``top_k`` best chunks, best first.

        ``where`` is a raw LanceDB SQL predicate for trusted callers; ``filters`` builds
        an equality predicate safely from untrusted values. Both may be given (ANDed).
        """
        if mode not in _MODES:
            raise ConfigError(f"unknown search mode {mode!r}", fix=f"use one of {_MODES}")
        if top_k < 1:
            raise ConfigError(f"top_k must be positive, got {top_k}", fix="pass top_k >= 1")
        if mode in ("vector", "hybrid") and vector is None:
            raise ConfigError(f"{mode} search needs vector=", fix="pass the query embedding")
        if mode in ("text", "hybrid") and not (text and text.strip()):
            raise ConfigError(f"{mode} search needs text=", fix="pass the query text")
        predicate = " AND ".join(f"({p})" for p in (where, build_where(filters or {})) if p)
        if self.count() == 0:
            return []
        query = self._query(mode, vector, text)
        if predicate:
            query = query.where(predicate, prefilter=True)
        rows: list[dict[str, Any]] = query.limit(top_k).to_list()
        return [self._hit(row) for row in rows]

    def _query(self, mode: str, vector: NDArray[Any] | None, text: str | None) -> Any:
        if mode == "vector":
            return self._table.search(self._vector(vector)).distance_type(self.metric)
        self._ensure_fts()
        if mode == "text":
            return self._table.search(text, query_type="fts")
        return (self._table.search(query_type="hybrid").vector(self._vector(vector))
                .text(text).distance_type(self.metric).rerank(RRFReranker()))

    def _vector(self, vector: NDArray[Any] | None) -> NDArray[np.float32]:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self._dim():
            raise ConfigError(f"query vector has {array.shape[0]} dimensions, the table "
                              f"{self._dim()}", fix="embed with the model the index was built with")
        return array

    def _dim(self) -> int:
        return int(self._table.schema.field("vector").type.list_size)

    def _ensure_fts(self) -> None:
        """Rebuild the full-text index if rows changed since it was built."""
        if not self._fts_fresh:
            self._table.create_index("text", config=FTS(), replace=True)
            self._fts_fresh = True

    def _hit(self, row: Mapping[str, Any]) -> Hit:
        if "_relevance_score" in row:
            score = float(row["_relevance_score"])
        elif "_score" in row:
            score = float(row["_score"])
        else:
            distance = float(row["_distance"])
            score = -distance if self.metric == "l2" else 1.0 - distance
        return Hit(text=row["text"], source=row["source"], title=row["title"],
                   heading=row["heading"], position=int(row["position"]),
                   start_line=int(row["start_line"]), end_line=int(row["end_line"]),
                   tokens=int(row["tokens"]), content_hash=row["content_hash"], score=score,
                   metadata=json.loads(row["metadata"] or "{}"))
