"""Walk files and folders into a ``ChunkStore``, re-embedding only what changed.

Embedding is the slow, possibly paid step, so each file carries a ``file_hash`` (its
bytes plus the chunking settings and the embedder name: changing any of them changes the
chunks or vectors) and a file whose hash the store already holds is skipped untouched.
Chunks are embedded in batches across files, but each file is written to the store in
one ``add`` only once all of its chunks are embedded: an interrupted run leaves a file
either complete or absent, never partial under a current hash that would hide it from
the next run. Sources are absolute POSIX paths, so files that vanished from an indexed
folder can be found by prefix and deleted. Events and the vector cache belong to the
embedder (``rag.embeddings.Embeddings``), not to the indexer.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devora_lab.errors import ConfigError
from devora_lab.rag.chunking import Chunk, chunk_text, kind_for, read_document

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from devora_lab.rag.retriever import Embedder
    from devora_lab.rag.store import ChunkStore

__all__ = ["BATCH_SIZE", "SKIPPED_FOLDERS", "IndexReport", "Indexer"]

BATCH_SIZE = 64
#: Folder names never walked (besides hidden ones): environments and caches, not docs.
SKIPPED_FOLDERS = frozenset({".venv", "node_modules", "__pycache__"})


@dataclass
class IndexReport:
    """What one ``Indexer.index`` run did. ``files_seen`` counts supported files found
    (unsupported extensions are ignored); ``files_skipped`` those that gave no chunks
    (binary or empty)."""

    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    files_skipped: int = 0
    chunks_added: int = 0
    seconds: float = 0.0


@dataclass
class _Pending:
    """Chunks waiting for vectors; files are committed whole, in arrival order."""

    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[NDArray[Any]] = field(default_factory=list)
    file_ends: list[int] = field(default_factory=list)  # cumulative chunk counts
    embedded: int = 0
    committed: int = 0


class Indexer:
    """Chunk, embed and store documents incrementally (see the module docstring)."""

    def __init__(self, store: ChunkStore, embedder: Embedder, *, max_tokens: int = 160,
                 overlap_tokens: int = 24, embedder_name: str | None = None,
                 metadata: Mapping[str, Any] | None = None) -> None:
        self.store = store
        #: User fields stored on every chunk of this run (e.g. ``{"team": "search"}``);
        #: retrieved hits carry them in ``Hit.metadata``.
        self.metadata = dict(metadata or {})
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        #: Part of every file hash: another embedder means other vectors, so re-embed.
        self.embedder_name = embedder_name or getattr(embedder, "name", None) or type(
            embedder).__name__
        store.bind_embedder(self.embedder_name)

    def index(self, paths: Sequence[Path], *, progress: bool = True) -> IndexReport:
        """Bring the store in line with ``paths`` (files or folders) and report counts."""
        started = time.perf_counter()
        report = IndexReport()
        stored = self.store.sources()
        files, roots = self._collect(paths, stored, report)
        pending = _Pending()
        with _progress(progress, len(files)) as advance:
            for path in files:
                self._index_file(path, stored, report, pending)
                self._embed(pending, final=False)
                report.chunks_added += self._commit(pending)
                advance()
            self._embed(pending, final=True)
            report.chunks_added += self._commit(pending)
        seen = {_source(path) for path in files}
        for source in stored:
            if source not in seen and any(source.startswith(root) for root in roots):
                self.store.delete_source(source)
                report.files_removed += 1
        if report.chunks_added or report.files_removed:
            self.store.refresh_index()
            self.store.compact()  # one file per indexed document would slow every search
        report.seconds = time.perf_counter() - started
        return report

    def _collect(self, paths: Sequence[Path], stored: dict[str, str],
                 report: IndexReport) -> tuple[list[Path], list[str]]:
        """Supported files under ``paths`` and the folder prefixes to prune under.

        A named file that no longer exists is removed if stored (it was indexed before)
        and an error otherwise, since that is most likely a typo.
        """
        files: list[Path] = []
        roots: list[str] = []
        for raw in paths:
            path = Path(raw).resolve()
            if path.is_dir():
                roots.append(path.as_posix().rstrip("/") + "/")
                files.extend(file for file in _walk(path) if kind_for(file) is not None)
            elif path.is_file():
                if kind_for(path) is None:
                    report.files_skipped += 1
                else:
                    files.append(path)
            elif _source(path) in stored:
                roots.append(_source(path))
            else:
                raise ConfigError(f"no such file or folder: {raw}",
                                  fix="pass existing files or folders to index")
        unique = sorted(set(files))
        report.files_seen = len(unique)
        return unique, roots

    def _index_file(self, path: Path, stored: dict[str, str], report: IndexReport,
                    pending: _Pending) -> None:
        source = _source(path)
        data = path.read_bytes()
        file_hash = self._file_hash(data)
        if stored.get(source) == file_hash:
            report.files_unchanged += 1
            return
        if source in stored:
            self.store.delete_source(source)
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # one warning per binary file, not per line
            text = read_document(path)
        kind = kind_for(path)
        chunks = [] if text is None or kind is None else chunk_text(
            text, source=source, kind=kind, max_tokens=self.max_tokens,
            overlap_tokens=self.overlap_tokens,
            metadata={**self.metadata, "file_hash": file_hash})
        if not chunks:
            report.files_skipped += 1
            return
        report.files_indexed += 1
        pending.chunks.extend(chunks)
        pending.file_ends.append(len(pending.chunks))

    def _file_hash(self, data: bytes) -> str:
        settings = f"{self.max_tokens}:{self.overlap_tokens}:{self.embedder_name}:"
        return hashlib.sha256(settings.encode() + data).hexdigest()

    def _embed(self, pending: _Pending, *, final: bool) -> None:
        """Embed full batches of waiting chunks (and the remainder when ``final``)."""
        while (waiting := len(pending.chunks) - pending.embedded) >= BATCH_SIZE or (
                final and waiting > 0):
            batch = pending.chunks[pending.embedded:pending.embedded + BATCH_SIZE]
            pending.vectors.append(np.asarray(self.embedder([chunk.text for chunk in batch])))
            pending.embedded += len(batch)

    def _commit(self, pending: _Pending) -> int:
        """Store every file whose chunks are all embedded; returns the chunks added."""
        added = 0
        if not pending.vectors:
            return added
        vectors = np.concatenate(pending.vectors)  # rows from ``pending.committed`` on
        while pending.file_ends and pending.file_ends[0] <= pending.embedded:
            end = pending.file_ends.pop(0)
            rows = vectors[pending.committed - (pending.embedded - len(vectors)):][
                :end - pending.committed]
            added += self.store.add(pending.chunks[pending.committed:end], rows,
                                    refresh_index=False)
            pending.committed = end
        left = pending.embedded - pending.committed
        pending.vectors = [vectors[len(vectors) - left:]] if left else []
        return added


def _source(path: Path) -> str:
    return path.resolve().as_posix()


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in a stable order, pruning hidden and tool folders."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        for name in sorted(names):
            yield Path(folder) / name


class _progress:  # noqa: N801 - used like a function in a with statement
    """A rich progress bar over files, or a no-op when ``enabled`` is false."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._task = self._bar.add_task("indexing", total=total)

    def __enter__(self) -> Any:
        if self._bar is None:
            return lambda: None
        self._bar.start()
        return lambda: self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
