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

Exact (flat) search reads every vector: fine for a team's docs, too slow at scale (about
180 ms per query at 100k chunks on 2 cores). Once the table holds ``ann_min_rows`` chunks
an IVF_HNSW_SQ index is built automatically, with a B-tree on ``source`` for the filters
and deletes; queries then refine the approximate candidates by exact distance
(``refine_factor``), which measured recall@10 1.00 against exact search at 100k, 5 ms per
query. Rows added later are searched exactly until ``optimize`` folds them into the index
(done automatically once they exceed a tenth of it).

The table remembers the embedder and metric it was built with (schema metadata), so a
query embedded by another model, which would return confident nonsense, is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, BTree, IvfHnswSq
from lancedb.rerankers import RRFReranker
from numpy.typing import NDArray

from devora_lab.errors import ConfigError
from devora_lab.rag.chunking import Chunk

__all__ = ["FILTER_COLUMNS", "ChunkStore", "Hit", "SearchMode", "build_where"]

SearchMode = Literal["vector", "text", "hybrid"]
Metric = Literal["cosine", "l2", "dot"]
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


_EMBEDDER_KEY: Final = b"devora.embedder"
_METRIC_KEY: Final = b"devora.metric"
_DEFAULT_ANN_MIN_ROWS: Final = 25_000
_REINDEX_SHARE: Final = 0.1  # optimize once unindexed rows exceed this share of indexed


def _schema(dim: int, embedder: str | None, metric: str) -> pa.Schema:
    fields = [pa.field(name, pa.string()) for name in _STRING_COLUMNS]
    fields += [pa.field(name, pa.int64()) for name in _INT_COLUMNS]
    fields += [pa.field("metadata", pa.string()),
               pa.field("vector", pa.list_(pa.float32(), dim))]
    metadata = {_METRIC_KEY: metric.encode()}
    if embedder:
        metadata[_EMBEDDER_KEY] = embedder.encode()
    return pa.schema(fields, metadata=metadata)


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
    """Chunks and vectors in one LanceDB table under ``folder``.

    ``metric`` defaults to the one the table was built with (cosine for a new table);
    ``embedder`` names the vector space (``Embeddings.name``) and is recorded on creation.
    """

    def __init__(self, folder: Path, *, table: str = "chunks", metric: str | None = None,
                 embedder: str | None = None, ann_min_rows: int = _DEFAULT_ANN_MIN_ROWS,
                 refine_factor: int = 10) -> None:
        if metric is not None and metric not in _METRICS:
            raise ConfigError(f"unknown metric {metric!r}", fix=f"use one of {_METRICS}")
        if not table:
            raise ConfigError("empty table name", fix="pass a table name, e.g. 'chunks'")
        if ann_min_rows < 1 or refine_factor < 1:
            raise ConfigError("ann_min_rows and refine_factor must be positive",
                              fix="pass ann_min_rows >= 1 and refine_factor >= 1")
        self.folder = Path(folder)
        self.table_name = table
        self.ann_min_rows = ann_min_rows
        self.refine_factor = refine_factor
        self._db: Any = lancedb.connect(self.folder)
        self._table: Any = None
        # open_table, not list_tables (whose shape changed across lancedb versions); a
        # missing table is created by the first add(), once the vector width is known
        with contextlib.suppress(ValueError):
            self._table = self._db.open_table(table)
        stored = self._stored(_METRIC_KEY)
        if metric is not None and stored is not None and metric != stored:
            raise ConfigError(f"the index at {self.folder} was built with the {stored} metric, "
                              f"not {metric}", fix="omit metric=, or index into a new table")
        self.metric: Metric = cast(Metric, metric or stored or "cosine")
        self._embedder = embedder
        self._fts_fresh = False

    @property
    def embedder(self) -> str | None:
        """The embedder the stored vectors came from (``None``: unknown or empty)."""
        return self._stored(_EMBEDDER_KEY) or self._embedder

    def _stored(self, key: bytes) -> str | None:
        if self._table is None:
            return None
        value = (self._table.schema.metadata or {}).get(key)
        return None if value is None else bytes(value).decode()

    def bind_embedder(self, name: str | None) -> None:
        """Use vectors from embedder ``name`` from now on; refused if the stored vectors
        came from another one (their similarities would be meaningless)."""
        self._check_embedder(name)
        self._embedder = name or self._embedder

    def _check_embedder(self, name: str | None) -> None:
        stored = self._stored(_EMBEDDER_KEY)
        if name and stored and name != stored:
            raise ConfigError(
                f"the index at {self.folder} was built with the embedder {stored}, not {name}",
                fix="query with the embedder the index was built with, or re-index "
                    "(devora-lab rag index --rebuild PATH...)")

    def add(self, chunks: Sequence[Chunk], vectors: NDArray[Any], *,
            refresh_index: bool = True) -> int:
        """Store ``chunks`` with their row-aligned ``vectors``; returns the rows added.

        Builds or refreshes the approximate index when the size calls for it; a bulk
        loader passes ``refresh_index=False`` and calls ``refresh_index()`` once at the end.
        """
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(chunks):
            raise ConfigError(f"vectors of shape {array.shape} for {len(chunks)} chunks",
                              fix="pass one row per chunk: shape (len(chunks), dim)")
        if not chunks:
            return 0
        self._check_embedder(self._embedder)
        if self._table is None:
            self._table = self._db.create_table(
                self.table_name, schema=_schema(array.shape[1], self._embedder, self.metric))
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
        if refresh_index:
            self.refresh_index()
        return len(rows)

    def drop(self) -> None:
        """Delete the whole table (to rebuild with another embedder or chunk size)."""
        if self._table is not None:
            self._db.drop_table(self.table_name)
            self._table = None
            self._fts_fresh = False

    def vector_index(self) -> Any:
        """The vector index's statistics (rows indexed and not), or ``None`` without one."""
        if self._table is None:
            return None
        for index in self._table.list_indices():
            if "vector" in index.columns:
                return self._table.index_stats(index.name)
        return None

    def build_index(self) -> None:
        """Build (or rebuild) the IVF_HNSW_SQ vector index and the ``source`` B-tree now.

        Partitions follow LanceDB's default (about one per 8k rows, at least one per
        4k would starve HNSW of neighbours); HNSW ``m=20, ef_construction=300``.
        """
        if self._table is None or self.count() == 0:
            raise ConfigError("cannot index an empty table", fix="add chunks first")
        self._table.create_index("vector", config=IvfHnswSq(distance_type=self.metric),
                                 replace=True)
        self._table.create_index("source", config=BTree(), replace=True)

    def refresh_index(self) -> None:
        """Build the approximate index once the table is large enough, and fold new rows
        into it once they exceed a tenth of it."""
        if self._table is None:
            return
        stats = self.vector_index()
        if stats is None:
            if self.count() >= self.ann_min_rows:
                self.build_index()
        elif stats.num_unindexed_rows > _REINDEX_SHARE * max(stats.num_indexed_rows, 1):
            self._table.optimize()

    def compact(self) -> None:
        """Merge the small files that many adds and deletes leave behind (and fold new rows
        into the vector index): an indexer calls it after a run that changed anything."""
        if self._table is not None:
            self._table.optimize()
            self._fts_fresh = False

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
               filters: Mapping[str, str | int] | None = None,
               exact: bool = False) -> list[Hit]:
        """The ``top_k`` best chunks, best first.

        ``where`` is a raw LanceDB SQL predicate for trusted callers; ``filters`` builds
        an equality predicate safely from untrusted values. Both may be given (ANDed).
        ``exact`` skips the approximate index (the ground truth for measuring recall).
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
        if mode != "text":
            query = (query.bypass_vector_index() if exact
                     else query.refine_factor(self.refine_factor))
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
