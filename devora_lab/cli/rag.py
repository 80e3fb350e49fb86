"""``devora-lab rag index | query | eval``: a document index in ``<workspace>/lancedb``.

All three use the workspace's embedder (``[rag] embedding_model``, default ``auto``: the
local all-MiniLM-L6-v2 when installed, else the hashing embedder), with its vectors
cached in ``<workspace>/cache/embeddings.sqlite`` and each batch logged as an event.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devora_lab.cli.context import console, open_workspace

if TYPE_CHECKING:
    from devora_lab.events import EventLog
    from devora_lab.rag.retriever import Retriever
    from devora_lab.workspace import Workspace

__all__ = ["register"]

_MODES = ["hybrid", "vector", "text"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    rag = commands.add_parser("rag", parents=[common], help="index documents and query them",
                              description=__doc__)
    sub = rag.add_subparsers(dest="rag_command", required=True, metavar="ACTION")

    index = sub.add_parser("index", parents=[common],
                           help="chunk and embed files and folders (only changed files)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    index.add_argument("--chunk-tokens", type=int, default=None,
                       help="tokens per chunk (default: [rag] chunk_tokens); changing it "
                            "re-indexes")
    index.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                       help="a field stored on every chunk of this run (repeatable)")
    index.add_argument("--rebuild", action="store_true",
                       help="drop the index first (after changing the embedder)")
    index.set_defaults(handler=_index)

    query = sub.add_parser("query", parents=[common], help="the chunks that best match a question")
    query.add_argument("query", help="the question or search text")
    query.add_argument("--top-k", type=int, default=5, help="hits to show (default 5)")
    query.add_argument("--mode", choices=_MODES, default="hybrid",
                       help="vector, full-text (BM25) or both fused (default hybrid)")
    query.add_argument("--max-tokens", type=int, default=None,
                       help="keep whole hits while their context fits this many tokens")
    query.add_argument("--threshold", type=float, default=None,
                       help="drop hits scoring below this (on the mode's own scale)")
    query.add_argument("--context", action="store_true", help="also print the context block")
    query.set_defaults(handler=_query)

    evaluate = sub.add_parser("eval", parents=[common],
                              help="recall@k, MRR, nDCG and tokens saved on labelled queries")
    evaluate.add_argument("queries", type=Path, help="JSON-lines query set (see data/)")
    evaluate.add_argument("--root", type=Path, default=Path("."),
                          help="folder the query set's sources are relative to (default .)")
    evaluate.add_argument("--top-k", type=int, default=10, help="ranking depth (default 10)")
    evaluate.set_defaults(handler=_eval)


def _index(args: argparse.Namespace) -> int:
    from devora_lab.rag.ingest import Indexer

    workspace = open_workspace(args)
    log = workspace.event_log()
    embeddings = workspace.embeddings(log)
    out = console()
    try:
        store = workspace.chunk_store()
        if args.rebuild:
            store.drop()
        rag = workspace.settings.rag
        indexer = Indexer(store, embeddings, max_tokens=args.chunk_tokens or rag.chunk_tokens,
                          overlap_tokens=rag.overlap_tokens, metadata=_fields(args.meta))
        report = indexer.index([Path(p) for p in args.paths], progress=out.is_terminal)
        indexed = store.vector_index()
    finally:
        embeddings.close()
        log.close()
    search = "approximate (IVF_HNSW_SQ)" if indexed is not None else "exact"
    out.print(
        f"indexed {report.files_indexed:,} of {report.files_seen:,} files with "
        f"{embeddings.name} into {workspace.lancedb_dir}: {report.chunks_added:,} chunks "
        f"added, {report.files_unchanged:,} unchanged, {report.files_removed:,} removed, "
        f"{report.files_skipped:,} skipped ({report.seconds:.1f} s); {store.count():,} "
        f"chunks, {search} search")
    return 0


def _fields(pairs: list[str]) -> dict[str, str]:
    from devora_lab.errors import ConfigError

    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--meta {pair!r} is not KEY=VALUE",
                              fix="write e.g. --meta team=search")
        fields[key.strip()] = value
    return fields


def _retriever(workspace: Workspace, log: EventLog | None) -> Retriever | None:
    from devora_lab.rag.retriever import Retriever

    store = workspace.chunk_store()
    if store.count() == 0:
        console().print(f"the index at {workspace.lancedb_dir} is empty: "
                        "run `devora-lab rag index PATH...` first")
        return None
    return Retriever(store, workspace.embeddings(log), event_log=log)


def _query(args: argparse.Namespace) -> int:
    from rich.table import Table

    workspace = open_workspace(args)
    log = workspace.event_log()
    try:
        retriever = _retriever(workspace, log)
        if retriever is None:
            return 1
        result = retriever.retrieve(args.query, top_k=args.top_k, mode=args.mode,
                                    max_tokens=args.max_tokens, threshold=args.threshold)
    finally:
        log.close()
    out = console()
    table = Table(title=f"{len(result.hits)} hits ({args.mode}, "
                        f"{getattr(retriever.embedder, 'name', '?')}, "
                        f"{result.tokens:,} context tokens)")
    for header in ("#", "score", "source", "heading", "lines"):
        table.add_column(header, justify="right" if header in ("#", "score") else "left",
                         overflow="fold")
    for number, hit in enumerate(result.hits, start=1):
        table.add_row(str(number), f"{hit.score:.4f}", hit.source, hit.heading or "-",
                      f"{hit.start_line}-{hit.end_line}")
    out.print(table)
    if args.context:
        out.print(result.context, markup=False)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from devora_lab.rag.evalset import evaluate_retriever, load_queries

    workspace = open_workspace(args)
    queries = load_queries(args.queries)
    retriever = _retriever(workspace, None)  # evaluation runs are not traffic: no events
    if retriever is None:
        return 1
    frame = evaluate_retriever(retriever, queries, args.root, top_k=args.top_k)
    out = console()
    out.print(f"{len(queries)} queries, embedder {getattr(retriever.embedder, 'name', '?')}, "
              f"{retriever.store.count():,} chunks")
    out.print(frame.to_string(float_format=lambda v: f"{v:.3f}"), markup=False)
    return 0
