"""The labelled retrieval-evaluation set over the project's own docs stays well-formed.

``data/rag_eval.jsonl`` holds one query per line with the sections that answer it:
``{"id": ..., "query": ..., "relevant": [{"source": ..., "section": ...}, ...]}``.
``source`` is a path relative to the repository root and ``section`` a heading path
without the document's H1 title; a chunk is relevant when its heading path minus the first
element equals ``section`` or starts with ``section + " > "``. These tests keep the labels
in step with the docs: a renamed or removed heading fails here instead of silently scoring 0.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from devora_lab.rag.chunking import chunk_text, read_document

ROOT = Path(__file__).resolve().parents[2]
EVAL_SET = ROOT / "data" / "rag_eval.jsonl"
SEPARATOR = " > "
# README sections that say nothing a user would search for.
UNLABELLED = ("Status",)


def _load() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(EVAL_SET.read_text(encoding="utf-8").splitlines(), 1):
        assert line.strip(), f"rag_eval.jsonl:{lineno}: blank line"
        row = json.loads(line)
        assert isinstance(row, dict), f"rag_eval.jsonl:{lineno}: not a JSON object"
        rows.append(row)
    return rows


@cache
def _sections(source: str) -> frozenset[str]:
    """Heading paths, minus the H1 title, of the chunks the indexer makes from ``source``."""
    text = read_document(ROOT / source)
    assert text is not None, f"{source} is not a text file"
    chunks = chunk_text(text, source=source, kind="markdown", max_tokens=400,
                        overlap_tokens=50)
    return frozenset(chunk.heading.partition(SEPARATOR)[2] for chunk in chunks
                     if chunk.heading and SEPARATOR in chunk.heading)


def _matches(section: str, chunk_section: str) -> bool:
    return chunk_section == section or chunk_section.startswith(section + SEPARATOR)


def test_schema() -> None:
    rows = _load()
    assert rows, "the evaluation set is empty"
    ids = [row.get("id") for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    assert not duplicates, f"duplicate ids: {duplicates}"
    for row in rows:
        assert set(row) == {"id", "query", "relevant"}, f"unexpected keys in {row}"
        assert isinstance(row["id"], str) and row["id"], row
        query_id = row["id"]
        assert isinstance(row["query"], str) and row["query"].strip(), query_id
        relevant = row["relevant"]
        assert isinstance(relevant, list) and 1 <= len(relevant) <= 3, query_id
        pairs = set()
        for entry in relevant:
            assert isinstance(entry, dict), query_id
            assert set(entry) == {"source", "section"}, f"{query_id}: {entry}"
            source, section = entry["source"], entry["section"]
            assert isinstance(source, str) and isinstance(section, str), query_id
            assert section.strip() == section != "", f"{query_id}: empty or padded section"
            assert not Path(source).is_absolute(), f"{query_id}: {source} must be relative"
            assert (ROOT / source).is_file(), f"{query_id}: no such file {source}"
            assert (source, section) not in pairs, f"{query_id}: {section!r} listed twice"
            pairs.add((source, section))


def test_every_label_matches_a_chunk() -> None:
    unmatched = [
        f"{row['id']}: {entry['source']} has no chunk under {entry['section']!r}"
        for row in _load()
        for entry in row["relevant"]
        if not any(_matches(entry["section"], found) for found in _sections(entry["source"]))
    ]
    assert not unmatched, "\n".join(unmatched)


def test_no_label_points_into_unlabelled_sections() -> None:
    labelled = [
        f"{row['id']}: {entry['section']!r}"
        for row in _load()
        for entry in row["relevant"]
        if entry["source"] == "README.md"
        and any(_matches(skip, entry["section"]) for skip in UNLABELLED)
    ]
    assert not labelled, "\n".join(labelled)
