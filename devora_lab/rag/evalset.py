"""Run a labelled query set against a retriever: metrics per mode and tokens saved.

A query set is JSON lines, one query each::

    {"id": "q01", "query": "how are retries spaced?",
     "relevant": [{"source": "README.md", "section": "The LLM client"}]}

``source`` is a path relative to the corpus root; ``section`` a heading path without the
document's title (``"The event log > Layout on disk"``). A retrieved chunk is relevant
when its source is that file and its heading path (title dropped) is the section or lies
under it, so a section is the unit of relevance: several chunks of one section count
once. The project ships such a set over its own docs (``data/rag_eval.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from devora_lab.errors import ConfigError
from devora_lab.llm.tokens import count_tokens
from devora_lab.rag.evaluation import evaluate, summarize, token_savings
from devora_lab.rag.retriever import Retriever
from devora_lab.rag.store import Hit, SearchMode

__all__ = ["MODES", "EvalQuery", "Section", "evaluate_retriever", "load_queries", "section_of"]

MODES: Final[tuple[SearchMode, ...]] = ("vector", "text", "hybrid")
_ARROW: Final = " > "


@dataclass(frozen=True, slots=True)
class Section:
    source: str  # relative to the corpus root, POSIX
    section: str

    @property
    def id(self) -> str:
        return f"{self.source}#{self.section}"


@dataclass(frozen=True, slots=True)
class EvalQuery:
    id: str
    query: str
    relevant: tuple[Section, ...]


def load_queries(path: str | Path) -> list[EvalQuery]:
    """Parse a query set, naming the line of anything malformed."""
    queries: list[EvalQuery] = []
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the query set {source}: {exc.strerror}",
                          fix="pass a JSON-lines file of labelled queries") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            relevant = tuple(Section(str(item["source"]), str(item["section"]))
                             for item in row["relevant"])
            query = EvalQuery(str(row["id"]), str(row["query"]), relevant)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}:{number}: not a labelled query ({exc!r})",
                              fix='use {"id", "query", "relevant": [{"source", "section"}]}'
                              ) from None
        if not query.query.strip() or not relevant:
            raise ConfigError(f"{source}:{number}: empty query or no relevant sections",
                              fix="give every query text and at least one relevant section")
        queries.append(query)
    if not queries:
        raise ConfigError(f"the query set {source} is empty", fix="add labelled queries")
    return queries


def section_of(hit: Hit, candidates: Sequence[Section]) -> str:
    """The id of the labelled section ``hit`` falls in, else its own source#heading."""
    path = (hit.heading or "").split(_ARROW)[1:]  # drop the document title
    heading = _ARROW.join(path)
    source = hit.source.replace("\\", "/")
    for section in candidates:
        same_file = source == section.source or source.endswith("/" + section.source)
        if same_file and (heading == section.section
                          or heading.startswith(section.section + _ARROW)):
            return section.id
    return f"{source}#{heading}"


def evaluate_retriever(retriever: Retriever, queries: Sequence[EvalQuery], root: str | Path, *,
                       modes: Sequence[SearchMode] = MODES, top_k: int = 10,
                       context_k: int = 5) -> pd.DataFrame:
    """One row per mode: mean recall@1/3/5/10, MRR, nDCG@10 and token savings.

    Tokens sent are those of the context block of the best ``context_k`` chunks;
    stuffing sends every document that holds a relevant section, whole.
    """
    corpus = Path(root)
    stuffed = [_document_tokens(corpus, query, retriever.model_for_tokens)
               for query in queries]
    rows = []
    for mode in modes:
        runs: dict[str, list[str]] = {}
        sent: list[int] = []
        for query in queries:
            hits = retriever.retrieve(query.query, top_k=top_k, mode=mode).hits
            runs[query.id] = [section_of(hit, query.relevant) for hit in hits]
            context = retriever.retrieve(query.query, top_k=context_k, mode=mode)
            sent.append(context.tokens)
        qrels = {query.id: {section.id for section in query.relevant} for query in queries}
        metrics = summarize(evaluate(runs, qrels))
        savings = token_savings(sent, stuffed)
        rows.append({"mode": mode, **metrics, "context_tokens": savings["sent_tokens"]
                     / len(queries), "stuffed_tokens": savings["stuffed_tokens"] / len(queries),
                     "saved_share": savings["saved_share"]})
    return pd.DataFrame(rows).set_index("mode")


def _document_tokens(root: Path, query: EvalQuery, model: str) -> int:
    total = 0
    for source in dict.fromkeys(section.source for section in query.relevant):
        path = root / source
        try:
            total += count_tokens(path.read_text(encoding="utf-8"), model)
        except OSError as exc:
            raise ConfigError(f"query {query.id}: cannot read {path}: {exc.strerror}",
                              fix="pass --root, the folder the sources are relative to"
                              ) from None
    return total
