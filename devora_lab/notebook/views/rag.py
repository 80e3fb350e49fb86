"""Charts and tables of the RAG notebook: retrieval quality per search mode on a labelled
query set (``rag.evalset.evaluate_retriever``), tokens saved against stuffing whole
documents, what the retriever returns for sample questions, and the ``retrieval`` events
agents wrote (latency, hits, context tokens over time).

``open_retriever`` is the workspace's index with its embedder, or a note when there is no
index (or it was built by another embedder). The notebook's own queries are evaluation,
not traffic: the retriever it opens writes no events.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import altair as alt
import pandas as pd

import devora_lab
from devora_lab.errors import ConfigError
from devora_lab.notebook.views._common import Note, Scope, clean
from devora_lab.rag.evalset import MODES, EvalQuery, evaluate_retriever, load_queries, section_of

if TYPE_CHECKING:
    from devora_lab.events.store import EventStore
    from devora_lab.monitoring.windows import Window
    from devora_lab.rag.retriever import Retriever
    from devora_lab.rag.store import SearchMode
    from devora_lab.workspace import Workspace

__all__ = ["RETRIEVAL_MEASURES", "eval_set_path", "evaluate", "index_summary", "load_eval_set",
           "metrics_chart", "open_retriever", "query_summary", "retrieval_chart",
           "retrieval_trend", "sample_hits", "savings_chart", "savings_table"]

#: The measures of ``retrieval_trend`` that ``retrieval_chart`` draws, with their titles.
RETRIEVAL_MEASURES: Final = {"retrievals": "retrievals", "latency_p50_ms": "latency p50 (ms)",
                             "latency_p95_ms": "latency p95 (ms)", "mean_hits": "hits",
                             "mean_context_tokens": "context tokens",
                             "mean_top_score": "top score"}
_METRICS: Final = ("recall@1", "recall@3", "recall@5", "recall@10", "mrr", "ndcg@10")


def eval_set_path() -> Path:
    """The labelled query set the project ships (``data/rag_eval.jsonl``) over its own
    docs; its sources are relative to the repository root, its parent folder's parent."""
    return Path(devora_lab.__file__).resolve().parent.parent / "data" / "rag_eval.jsonl"


def load_eval_set(path: str | Path | None = None) -> list[EvalQuery] | Note:
    """The labelled queries (default: the shipped set), or a note if there are none."""
    chosen = Path(path) if path is not None else eval_set_path()
    try:
        return load_queries(chosen)
    except ConfigError as error:
        return Note(f"No labelled queries: {error.message} ({error.fix})")


def query_summary(queries: Sequence[EvalQuery] | Note, n: int = 3) -> str:
    """The first ``n`` labelled queries with their relevant sections, and how many there
    are: a stable text for a checked notebook cell."""
    if isinstance(queries, Note):
        return queries.text
    lines = [f"{q.id} {q.query} -> {', '.join(s.id for s in q.relevant)}" for q in queries[:n]]
    return "\n".join([*lines, f"{len(queries)} labelled queries"])


def open_retriever(workspace: Workspace) -> Retriever | Note:
    """A retriever over the workspace's index with the embedder it was built with."""
    from devora_lab.rag.retriever import Retriever

    store = workspace.chunk_store()
    if store.count() == 0:
        return Note(f"No RAG index in {workspace.lancedb_dir}: build one with "
                    "`devora-lab rag index README.md docs` (from the repository root).")
    embeddings = workspace.embeddings(None)
    try:
        return Retriever(store, embeddings)
    except ConfigError as error:
        embeddings.close()
        return Note(f"The index cannot be searched here: {error.message} ({error.fix})")


def evaluate(retriever: Retriever | Note, queries: Sequence[EvalQuery] | Note,
             root: str | Path | None = None, *, modes: Sequence[SearchMode] = MODES,
             top_k: int = 10) -> pd.DataFrame | Note:
    """``evaluate_retriever`` over ``queries`` (sources relative to ``root``, default the
    repository root beside the shipped set); a note when the index or queries are missing
    or the index does not hold the documents the queries were labelled on."""
    if isinstance(retriever, Note):
        return retriever
    if isinstance(queries, Note):
        return queries
    corpus = Path(root) if root is not None else eval_set_path().parent.parent
    try:
        return evaluate_retriever(retriever, queries, corpus, modes=modes, top_k=top_k)
    except ConfigError as error:
        return Note(f"The evaluation could not run: {error.message} ({error.fix})")


def index_summary(retriever: Retriever | Note) -> Note:
    """What the index holds and which embedder searches it (or why there is none)."""
    if isinstance(retriever, Note):
        return retriever
    name = getattr(retriever.embedder, "name", "an unnamed embedder")
    sources = len(retriever.store.sources())
    return Note(f"Index: {retriever.store.count():,} chunks from {sources:,} files, "
                f"searched with {name}.")


def metrics_chart(results: pd.DataFrame | Note) -> alt.Chart | Note:
    """Recall@k, MRR and nDCG@10 per mode (``evaluate_retriever``'s frame), side by side;
    higher is better, 1 is every labelled section found at the top."""
    if isinstance(results, Note):
        return results
    data = results.reset_index().melt(id_vars="mode", value_vars=[m for m in _METRICS
                                                                  if m in results],
                                      var_name="metric", value_name="score")
    chart_: alt.Chart = alt.Chart(data, title="Retrieval quality by mode").mark_bar().encode(
        x=alt.X("mode:N", title=None, axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("score:Q", scale=alt.Scale(domain=[0, 1]), title="mean over queries"),
        color=alt.Color("mode:N"),
        column=alt.Column("metric:N", title=None, sort=list(_METRICS)),
        tooltip=["mode:N", "metric:N", alt.Tooltip("score:Q", format=".3f")],
    ).properties(width=70)
    return chart_


def savings_table(results: pd.DataFrame | Note) -> pd.DataFrame | Note:
    """Mean tokens per query sent as retrieved context against stuffing the documents."""
    if isinstance(results, Note):
        return results
    frame = results[["context_tokens", "stuffed_tokens", "saved_share"]].copy()
    frame["times_smaller"] = frame["stuffed_tokens"] / frame["context_tokens"]
    return frame.reset_index()


def savings_chart(results: pd.DataFrame | Note) -> alt.Chart | Note:
    """Tokens per query: the retrieved context against whole documents (the gap is
    usually more than ten times; the tooltip gives the share saved)."""
    table = savings_table(results)
    if isinstance(table, Note):
        return table
    data = table.melt(id_vars=["mode", "saved_share"],
                                       value_vars=["context_tokens", "stuffed_tokens"],
                                       var_name="sent", value_name="tokens")
    data["sent"] = data["sent"].map({"context_tokens": "retrieved context",
                                     "stuffed_tokens": "whole documents"})
    title = "Tokens per query: retrieval vs stuffing"
    chart_: alt.Chart = alt.Chart(data, title=title).mark_bar().encode(
        y=alt.Y("mode:N", title=None),
        yOffset=alt.YOffset("sent:N"),
        x=alt.X("tokens:Q", title="tokens per query", axis=alt.Axis(format=",")),
        color=alt.Color("sent:N", title=None),
        tooltip=["mode:N", "sent:N", alt.Tooltip("tokens:Q", format=",.0f"),
                 alt.Tooltip("saved_share:Q", format=".1%", title="saved")],
    ).properties(width=480)
    return chart_


def sample_hits(retriever: Retriever | Note, queries: Sequence[EvalQuery] | Note, *,
                n: int = 3, top_k: int = 5, mode: SearchMode = "hybrid") -> pd.DataFrame | Note:
    """What the retriever returns for the first ``n`` labelled queries: rank, score,
    source, section, lines, and whether the hit lies in a section labelled relevant."""
    if isinstance(retriever, Note):
        return retriever
    if isinstance(queries, Note):
        return queries
    rows = []
    for query in queries[:n]:
        relevant = {section.id for section in query.relevant}
        for rank, hit in enumerate(retriever.retrieve(query.query, top_k=top_k,
                                                      mode=mode).hits, start=1):
            rows.append({"query": query.query, "rank": rank, "score": hit.score,
                         "source": _short(hit.source), "section": hit.heading or "",
                         "lines": f"{hit.start_line}-{hit.end_line}",
                         "relevant": section_of(hit, query.relevant) in relevant})
    return pd.DataFrame(rows, columns=["query", "rank", "score", "source", "section", "lines",
                                       "relevant"])


def _short(source: str) -> str:
    """A source path relative to the repository root when it lies under it."""
    try:
        return Path(source).relative_to(eval_set_path().parent.parent).as_posix()
    except ValueError:
        return source


def _bucket(window: Window) -> str:
    seconds = window.seconds
    return "hour" if seconds is not None and seconds <= 3 * 86_400 else "day"


def retrieval_trend(store: EventStore, scope: Scope) -> pd.DataFrame:
    """The ``retrieval`` events per hour (windows up to three days) or day and mode:
    count, latency p50/p95, mean hits, context tokens and top score. Agent and user
    filters of the scope apply; model and variant filters do not (a retrieval has none)."""
    bucket = _bucket(scope.window)
    clauses: list[str] = ["kind = 'retrieval'"]
    params: list[object] = []
    for bound, op in ((scope.since, ">="), (scope.until, "<")):
        if bound is not None:
            clauses.append(f"ts {op} ?")
            params.append(bound)
    for name, column in (("agent", "agent"), ("user", "user_id")):
        if name in scope.filters:
            clauses.append(f"{column} = ?")
            params.append(scope.filters[name])
    frame = store.df(f"""
        SELECT date_trunc('{bucket}', ts) AS bucket, coalesce(name, '?') AS mode,
               count(*) AS retrievals,
               quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
               quantile_cont(latency_ms, 0.95) AS latency_p95_ms,
               avg(item_count) AS mean_hits, avg(input_tokens) AS mean_context_tokens,
               avg(value) AS mean_top_score
        FROM events WHERE {' AND '.join(clauses)} GROUP BY 1, 2 ORDER BY 1, 2""", params)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    return frame


def retrieval_chart(trend: pd.DataFrame) -> alt.FacetChart | Note:
    """One panel per measure over time, a line per retrieval mode (the event's name);
    drag on a panel to zoom all of them. Measures the events do not carry are left out."""
    if trend.empty:
        return Note("No retrieval events in this window: agents log one per "
                    "`Retriever.retrieve` when given the event log.")
    measures = [m for m in RETRIEVAL_MEASURES if m in trend and trend[m].notna().any()]
    data = trend.melt(id_vars=["bucket", "mode"], value_vars=measures, var_name="measure",
                      value_name="value")
    data["bucket"] = data["bucket"].dt.tz_localize(None)
    data["measure"] = data["measure"].map(RETRIEVAL_MEASURES)
    zoom = alt.selection_interval(encodings=["x"], bind="scales")
    chart = alt.Chart(clean(data)).mark_line(point=True).encode(
        x=alt.X("bucket:T", title=None), y=alt.Y("value:Q", title=None),
        color=alt.Color("mode:N", title="event name (mode)"),
        tooltip=[alt.Tooltip("bucket:T", title="from"), alt.Tooltip("mode:N", title="name"),
                 "measure:N", alt.Tooltip("value:Q", format=",.4g")],
    ).add_params(zoom).properties(width=520, height=110)
    faceted: alt.FacetChart = chart.facet(
        row=alt.Row("measure:N", title=None, sort=list(RETRIEVAL_MEASURES.values())),
        title="Retrievals logged by agents").resolve_scale(y="independent")
    return faceted
