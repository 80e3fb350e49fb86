"""``devora-lab rag index | query``: a local document index in ``<workspace>/lancedb``.

Both commands embed with the offline ``HashingEmbedder`` (word and trigram overlap, no
model download) so that the index works anywhere; it is the default until a
sentence-embedding model is configured, and an index must be queried with the embedder
it was built with.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from devora_lab.cli.context import console, open_workspace

__all__ = ["register"]

_EMBEDDER_NOTE = ("Embeds with the offline hashing embedder (word overlap, not meaning), the "
                  "default until a sentence-embedding model is configured.")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    rag = commands.add_parser("rag", parents=[common], help="index documents and query them",
                              description=_EMBEDDER_NOTE)
    sub = rag.add_subparsers(dest="rag_command", required=True, metavar="ACTION")

    index = sub.add_parser("index", parents=[common], description=_EMBEDDER_NOTE,
                           help="chunk and embed files and folders (only changed files)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    index.add_argument("--max-tokens", type=int, default=400,
                       help="tokens per chunk (default 400); changing it re-indexes")
    index.set_defaults(handler=_index)

    query = sub.add_parser("query", parents=[common], description=_EMBEDDER_NOTE,
                           help="the chunks that best match a question")
    query.add_argument("query", help="the question or search text")
    query.add_argument("--top-k", type=int, default=5, help="hits to show (default 5)")
    query.add_argument("--mode", choices=["hybrid", "vector", "text"], default="hybrid",
                       help="vector, full-text (BM25) or both fused (default hybrid)")
    query.add_argument("--max-tokens", type=int, default=None,
                       help="keep whole hits while their context fits this many tokens")
    query.set_defaults(handler=_query)


def _index(args: argparse.Namespace) -> int:
    from devora_lab.cache.semantic import HashingEmbedder
    from devora_lab.rag.ingest import Indexer
    from devora_lab.rag.store import ChunkStore

    workspace = open_workspace(args)
    embedder = HashingEmbedder()
    log = workspace.event_log()
    out = console()
    try:
        indexer = Indexer(ChunkStore(workspace.lancedb_dir), embedder, event_log=log,
                          max_tokens=args.max_tokens, embedder_name=f"hashing-{embedder.dim}")
        report = indexer.index([Path(p) for p in args.paths], progress=out.is_terminal)
    finally:
        log.close()
    out.print(
        f"indexed {report.files_indexed:,} of {report.files_seen:,} files into "
        f"{workspace.lancedb_dir}: {report.chunks_added:,} chunks added, "
        f"{report.files_unchanged:,} unchanged, {report.files_removed:,} removed, "
        f"{report.files_skipped:,} skipped ({report.seconds:.1f} s)")
    return 0


def _query(args: argparse.Namespace) -> int:
    from rich.table import Table

    from devora_lab.cache.semantic import HashingEmbedder
    from devora_lab.events import Event, EventKind
    from devora_lab.rag.retriever import Retriever
    from devora_lab.rag.store import ChunkStore

    workspace = open_workspace(args)
    store = ChunkStore(workspace.lancedb_dir)
    out = console()
    if store.count() == 0:
        out.print(f"the index at {workspace.lancedb_dir} is empty: "
                  "run `devora-lab rag index PATH...` first")
        return 1
    begin = time.perf_counter()
    result = Retriever(store, HashingEmbedder()).retrieve(
        args.query, top_k=args.top_k, mode=args.mode, max_tokens=args.max_tokens)
    latency = (time.perf_counter() - begin) * 1000
    log = workspace.event_log()
    try:
        log.write(Event(kind=EventKind.RETRIEVAL, name=args.mode, item_count=len(result.hits),
                        latency_ms=latency))
    finally:
        log.close()
    table = Table(title=f"{len(result.hits)} hits ({args.mode}, {result.tokens:,} tokens)")
    for header in ("#", "score", "source", "heading", "lines"):
        table.add_column(header, justify="right" if header in ("#", "score") else "left",
                         overflow="fold")
    for number, hit in enumerate(result.hits, start=1):
        table.add_row(str(number), f"{hit.score:.4f}", hit.source, hit.heading or "-",
                      f"{hit.start_line}-{hit.end_line}")
    out.print(table)
    return 0
