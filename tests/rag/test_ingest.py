"""Indexer (incremental chunk → embed → store) and the ``devora-lab rag`` commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from numpy.typing import NDArray

from devora_lab.cache.semantic import HashingEmbedder
from devora_lab.cli import rag as rag_cli
from devora_lab.errors import DevoraWarning
from devora_lab.events import EventLog
from devora_lab.rag.embedders import HashingBackend
from devora_lab.rag.embeddings import Embeddings
from devora_lab.rag.ingest import BATCH_SIZE, Indexer
from devora_lab.rag.store import ChunkStore


class CountingEmbedder:
    """Counts calls and texts so tests can prove unchanged files are never embedded."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dim=256)
        self.calls = 0
        self.texts = 0

    def __call__(self, texts: Sequence[str]) -> NDArray[Any]:
        self.calls += 1
        self.texts += len(texts)
        return self.inner(texts)


def _docs(root: Path) -> Path:
    docs = root / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "README.md").write_text("# Install\n\nRun pip install devora.\n\n"
                                    "## Linux\n\nUse the venv.\n")
    (docs / "guide" / "usage.rst").write_text("Usage\n=====\n\nCall the agent.\n")
    (docs / "guide" / "tool.py").write_text("def run():\n    return 1\n\n\n"
                                            "class Agent:\n    pass\n")
    (docs / "blob.txt").write_bytes(b"\x00\x01binary\x00")
    (docs / "empty.md").write_text("")
    (docs / "image.png").write_bytes(b"\x89PNG\x00")  # unsupported: ignored
    for hidden in (".git", ".venv", "node_modules", "__pycache__"):
        (docs / hidden).mkdir()
        (docs / hidden / "skip.md").write_text("# Never indexed\n")
    return docs


def _indexer(tmp_path: Path, embedder: Any) -> tuple[Indexer, ChunkStore]:
    store = ChunkStore(tmp_path / "lancedb")
    return Indexer(store, embedder, max_tokens=400, overlap_tokens=50,
                   embedder_name="hashing-256"), store


def test_first_index_counts_and_stores_chunks(tmp_path: Path) -> None:
    docs, embedder = _docs(tmp_path), CountingEmbedder()
    indexer, store = _indexer(tmp_path, embedder)
    with pytest.warns(DevoraWarning, match="blob.txt"):
        report = indexer.index([docs], progress=False)
    assert (report.files_seen, report.files_indexed, report.files_skipped) == (5, 3, 2)
    assert report.files_unchanged == report.files_removed == 0
    assert report.chunks_added == store.count() == embedder.texts > 0
    assert embedder.calls == 1  # all files' chunks share one batch
    sources = store.sources()
    assert {Path(s).name for s in sources} == {"README.md", "usage.rst", "tool.py"}
    assert all(Path(s).is_absolute() for s in sources)


def test_reindex_unchanged_embeds_nothing(tmp_path: Path) -> None:
    docs, embedder = _docs(tmp_path), CountingEmbedder()
    indexer, store = _indexer(tmp_path, embedder)
    with pytest.warns(DevoraWarning):
        first = indexer.index([docs], progress=False)
    calls, rows = embedder.calls, store.count()
    with pytest.warns(DevoraWarning):  # the binary file is still read, and still skipped
        again = indexer.index([docs], progress=True)
    assert embedder.calls == calls and store.count() == rows
    assert (again.files_unchanged, again.files_indexed, again.chunks_added) == (3, 0, 0)
    assert again.files_seen == first.files_seen


def test_edit_reindexes_only_that_file_and_delete_removes(tmp_path: Path) -> None:
    docs, embedder = _docs(tmp_path), CountingEmbedder()
    indexer, store = _indexer(tmp_path, embedder)
    with pytest.warns(DevoraWarning):
        indexer.index([docs], progress=False)
    readme = (docs / "README.md").resolve().as_posix()
    before = store.sources()
    (docs / "README.md").write_text("# Install\n\nUse uv instead.\n")
    texts = embedder.texts
    with pytest.warns(DevoraWarning):
        report = indexer.index([docs], progress=False)
    after = store.sources()
    assert (report.files_indexed, report.files_unchanged) == (1, 2)
    assert embedder.texts - texts == report.chunks_added == 1
    assert after[readme] != before[readme]
    assert {k: v for k, v in after.items() if k != readme} == {
        k: v for k, v in before.items() if k != readme}
    hits = store.search(text="uv instead", mode="text", top_k=5)
    assert [hit.source for hit in hits] == [readme]
    assert not store.search(text="venv", mode="text", filters={"source": readme})

    (docs / "guide" / "tool.py").unlink()
    with pytest.warns(DevoraWarning):
        report = indexer.index([docs], progress=False)
    assert report.files_removed == 1 and report.files_unchanged == 2
    assert not any(s.endswith("tool.py") for s in store.sources())


def test_indexing_a_subfolder_keeps_files_outside_it(tmp_path: Path) -> None:
    docs, embedder = _docs(tmp_path), CountingEmbedder()
    indexer, store = _indexer(tmp_path, embedder)
    with pytest.warns(DevoraWarning):
        indexer.index([docs], progress=False)
    (docs / "guide" / "tool.py").unlink()
    report = indexer.index([docs / "guide"], progress=False)
    assert report.files_removed == 1
    assert any(s.endswith("README.md") for s in store.sources())


def test_one_embedding_event_per_batch(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_text("".join(f"# Section {i}\n\nBody {i} text.\n\n" for i in range(100)))
    log = EventLog(tmp_path / "events")
    store = ChunkStore(tmp_path / "lancedb")
    embeddings = Embeddings(HashingBackend(dim=256, batch_size=BATCH_SIZE), event_log=log)
    report = Indexer(store, embeddings, max_tokens=16, overlap_tokens=0).index(
        [big], progress=False)
    log.close()
    assert store.embedder == "local:hashing-256"
    assert report.chunks_added == store.count() >= BATCH_SIZE + 1
    with EventLog(tmp_path / "events").store() as events:
        rows = events.rows("SELECT request_model, item_count, input_tokens, latency_ms, "
                           "cost_usd FROM events WHERE kind = 'embedding' "
                           "ORDER BY item_count DESC")
    assert [row[1] for row in rows] == [BATCH_SIZE, report.chunks_added - BATCH_SIZE]
    assert all(row[0] == "hashing-256" and row[2] > 0 and row[3] >= 0 and row[4] == 0
               for row in rows)


def test_changed_settings_reindex_and_missing_path_is_an_error(tmp_path: Path) -> None:
    docs, embedder = _docs(tmp_path), CountingEmbedder()
    indexer, store = _indexer(tmp_path, embedder)
    with pytest.warns(DevoraWarning):
        indexer.index([docs], progress=False)
    smaller = Indexer(store, embedder, max_tokens=100, overlap_tokens=50,
                      embedder_name="hashing-256")
    with pytest.warns(DevoraWarning):
        assert smaller.index([docs], progress=False).files_indexed == 3
    from devora_lab.errors import ConfigError
    with pytest.raises(ConfigError, match="no such file"):
        indexer.index([tmp_path / "nope"], progress=False)


def _parser() -> argparse.ArgumentParser:
    from devora_lab.cli import _common

    parser = argparse.ArgumentParser(parents=[_common(top=True)])
    rag_cli.register(parser.add_subparsers(dest="command", required=True), _common(top=False))
    return parser


def _run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return int(args.handler(args))


def test_cli_index_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
    docs, workspace = _docs(tmp_path), tmp_path / "ws"
    assert _run(["rag", "query", "anything", "--workspace", str(workspace)]) == 1
    assert "empty" in capsys.readouterr().out
    with pytest.warns(DevoraWarning):
        assert _run(["rag", "index", str(docs), "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "indexed 3 of 5 files" in out and "2 skipped" in out
    assert _run(["rag", "query", "pip install devora", "--top-k", "2", "--mode", "hybrid",
                 "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    assert "README.md" in out and "Install" in out and "2 hits" in out
    assert "local:hashing-2048" in out
    with EventLog(workspace / "events").store() as events:
        # one batch at index time, one for the query's vector
        assert events.count("embedding") == 2
        assert events.rows("SELECT name, item_count FROM events WHERE kind = 'retrieval'") \
            == [("hybrid", 2)]


def test_cli_rebuild_switches_embedder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    docs, workspace = _docs(tmp_path), tmp_path / "ws"
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
    _run(["rag", "index", str(docs / "README.md"), "--workspace", str(workspace)])
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "text-embedding-3-small")
    from devora_lab.errors import ConfigError
    with pytest.raises(ConfigError, match="built with the embedder local:hashing-2048"):
        _run(["rag", "query", "install", "--workspace", str(workspace)])
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
    capsys.readouterr()
    assert _run(["rag", "index", "--rebuild", str(docs / "README.md"),
                 "--workspace", str(workspace)]) == 0
    assert "indexed 1 of 1 files" in capsys.readouterr().out


def test_cli_help_names_the_embedder_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["rag", "--help"])
    assert "embedding_model" in capsys.readouterr().out


def test_user_fields_reach_every_chunk_and_a_bad_meta_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVORA_RAG__EMBEDDING_MODEL", "hashing")
    docs, workspace = _docs(tmp_path), tmp_path / "ws"
    _run(["rag", "index", str(docs / "README.md"), "--meta", "team=search",
          "--meta", "tier=gold", "--workspace", str(workspace)])
    store = ChunkStore(workspace / "lancedb")
    hits = store.search(text="venv", mode="text", top_k=5)
    assert hits and all(h.metadata["team"] == "search" and h.metadata["tier"] == "gold"
                        for h in hits)
    from devora_lab.errors import ConfigError
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        _run(["rag", "index", str(docs), "--meta", "oops", "--workspace", str(workspace)])
