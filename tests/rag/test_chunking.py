"""The document chunker: token bounds, section structure, overlap and file reading."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devora_lab.errors import DevoraWarning
from devora_lab.llm.tokens import count_tokens
from devora_lab.rag.chunking import Chunk, chunk_text, kind_for, read_document


def _words(count: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = ["alpha", "beta", "gamma", "delta", "token", "chunk", "lab", "retrieval", "42"]
    return " ".join(rng.choice(vocab) for _ in range(count))


def _shared(previous: Chunk, chunk: Chunk) -> str:
    """The longest start of ``chunk`` that ends ``previous``: the overlap."""
    size = next((n for n in range(min(len(previous.text), len(chunk.text)), 0, -1)
                 if previous.text.endswith(chunk.text[:n])), 0)
    return chunk.text[:size]


def _check_bounds(chunks: list[Chunk], max_tokens: int) -> None:
    for position, chunk in enumerate(chunks):
        assert chunk.position == position
        assert chunk.tokens == count_tokens(chunk.text, "gpt-4o") <= max_tokens
        assert 1 <= chunk.start_line <= chunk.end_line


def test_empty_and_blank_text_give_no_chunks(tmp_path: Path) -> None:
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    assert read_document(empty) == ""
    assert chunk_text("", source=str(empty), kind="markdown") == []
    assert chunk_text("\n \n\t\n", source="x.txt", kind="text") == []


def test_one_huge_line_is_split_by_tokens_and_covered() -> None:
    rng = random.Random(1)
    text = "".join(rng.choice("abcdefghij é€0123456789,.;") for _ in range(200_000))
    chunks = chunk_text(text, source="huge.txt", kind="text", max_tokens=300,
                        overlap_tokens=0)
    assert len(chunks) > 10
    _check_bounds(chunks, 300)
    assert "".join(chunk.text for chunk in chunks) == text
    assert all(chunk.start_line == chunk.end_line == 1 for chunk in chunks)


def test_huge_line_with_overlap_stays_bounded() -> None:
    text = _words(20_000)
    chunks = chunk_text(text, source="words.txt", kind="text", max_tokens=200,
                        overlap_tokens=40)
    _check_bounds(chunks, 200)
    for previous, chunk in pairwise(chunks):
        assert 0 < count_tokens(_shared(previous, chunk), "gpt-4o") <= 40


def test_binary_files_warn_and_give_none(tmp_path: Path) -> None:
    nul = tmp_path / "image.png"
    nul.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    for path in (nul, latin):
        with pytest.warns(DevoraWarning, match=path.name):
            assert read_document(path) is None


def test_read_document_normalises_newlines(tmp_path: Path) -> None:
    path = tmp_path / "crlf.md"
    path.write_bytes("\ufeff# T\r\n\r\nbody\r\n".encode())
    assert read_document(path) == "# T\n\nbody\n"


def test_markdown_heading_path_and_title() -> None:
    text = ("intro line\n\n# Guide\n\nwelcome\n\n## Install\n\ngeneral\n\n### Linux\n\n"
            "apt-get install\n\n## Usage\n\nrun it\n")
    chunks = chunk_text(text, source="docs/guide.md", kind="markdown", max_tokens=50)
    by_heading = {chunk.heading: chunk for chunk in chunks}
    assert set(by_heading) == {None, "Guide", "Guide > Install", "Guide > Install > Linux",
                               "Guide > Usage"}
    assert all(chunk.title == "Guide" for chunk in chunks)
    linux = by_heading["Guide > Install > Linux"]
    assert linux.text.startswith("### Linux") and "apt-get" in linux.text
    assert (linux.start_line, linux.end_line) == (11, 14)
    assert chunk_text("no headings", source="a/notes.md", kind="markdown")[0].title == "notes"


def test_fenced_code_block_kept_whole_when_it_fits() -> None:
    fence = "```python\n" + "".join(f"x{n} = {n}\n\n" for n in range(15)) + "```\n"
    text = "# Code\n\n" + _words(60) + "\n\n" + fence + "\nafter\n"
    chunks = chunk_text(text, source="c.md", kind="markdown", max_tokens=120,
                        overlap_tokens=0)
    _check_bounds(chunks, 120)
    assert count_tokens(fence, "gpt-4o") <= 120
    assert any(fence in chunk.text for chunk in chunks)


def test_fenced_code_block_split_by_lines_when_too_big() -> None:
    body = "".join(f"value_{n} = compute({n}, {n * 7})  # note\n" for n in range(80))
    text = "# Code\n\n```python\n" + body + "```\n"
    chunks = chunk_text(text, source="c.md", kind="markdown", max_tokens=100,
                        overlap_tokens=0)
    assert len(chunks) > 3
    _check_bounds(chunks, 100)
    assert all(chunk.text.endswith("\n") for chunk in chunks)  # never mid-line
    assert "".join(chunk.text for chunk in chunks) == text
    assert {chunk.heading for chunk in chunks} == {"Code"}


def test_rst_titles_and_literal_blocks() -> None:
    literal = "   $ pip install x\n\n   $ x --help\n"
    text = ("=======\nManual\n=======\n\nIntro.\n\nSetup\n-----\n\nRun this::\n\n" + literal
            + "\nDone.\n\nDetails\n~~~~~~~\n\nDeep.\n\nOther\n-----\n\nMore.\n")
    chunks = chunk_text(text, source="m.rst", kind="rst", max_tokens=40, overlap_tokens=0)
    assert [chunk.heading for chunk in chunks] == [
        "Manual", "Manual > Setup", "Manual > Setup > Details", "Manual > Other"]
    assert all(chunk.title == "Manual" for chunk in chunks)
    assert literal in chunks[1].text


def test_code_split_at_top_level_definitions() -> None:
    text = ("import os\n\n\n@decorator\ndef alpha(x):\n    return x\n\n\nclass Beta:\n"
            "    def method(self):\n        pass\n\n\nasync def gamma():\n    pass\n")
    chunks = chunk_text(text, source="pkg/mod.py", kind="code", max_tokens=100)
    assert [chunk.heading for chunk in chunks] == [None, "def alpha", "class Beta", "def gamma"]
    assert chunks[1].text.startswith("@decorator\ndef alpha")
    assert "def method" in chunks[2].text
    assert chunks[0].title == "mod"


def test_overlap_within_section_only() -> None:
    paragraphs = "\n\n".join(_words(30, seed) for seed in range(12))
    text = f"# A\n\n{paragraphs}\n\n# B\n\n{_words(30, 99)}\n"
    chunks = chunk_text(text, source="o.md", kind="markdown", max_tokens=80,
                        overlap_tokens=20)
    _check_bounds(chunks, 80)
    in_a = [chunk for chunk in chunks if chunk.heading == "A"]
    assert len(in_a) > 2
    for previous, chunk in pairwise(in_a):
        tail = _shared(previous, chunk)
        assert 0 < count_tokens(tail, "gpt-4o") <= 20
        assert previous.start_line <= chunk.start_line <= previous.end_line
    first_b = next(chunk for chunk in chunks if chunk.heading == "B")
    assert first_b.text.startswith("# B")


def test_hash_metadata_and_stability() -> None:
    text = "# T\n\n" + "\n\n".join(_words(40, seed) for seed in range(6))
    first = chunk_text(text, source="s.md", kind="markdown", max_tokens=60, overlap_tokens=10,
                       metadata={"repo": "devora"})
    second = chunk_text(text, source="s.md", kind="markdown", max_tokens=60, overlap_tokens=10,
                        metadata={"repo": "devora"})
    assert first == second
    assert [chunk.position for chunk in first] == list(range(len(first)))
    assert len({chunk.content_hash for chunk in first}) == len(first)
    assert all(len(chunk.content_hash) == 64 for chunk in first)
    assert first[0].metadata == {"kind": "markdown", "repo": "devora"}
    assert hash(first[0]) == hash(second[0])


def test_kind_for_and_bad_arguments() -> None:
    assert kind_for("a/README.md") == "markdown"
    assert kind_for("x.MARKDOWN") == "markdown"
    assert kind_for("index.rst") == "rst"
    assert kind_for("notes.txt") == "text"
    assert kind_for("main.py") == kind_for("app.tsx") == kind_for("lib.rs") == "code"
    assert kind_for("photo.png") is None
    assert kind_for("Makefile") is None
    with pytest.raises(ValueError, match="kind"):
        chunk_text("x", source="x", kind="html")
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", source="x", kind="text", max_tokens=100, overlap_tokens=-1)
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", source="x", kind="text", max_tokens=8)


_LINE = st.one_of(
    st.text(alphabet="abc xyz,.é€\t", min_size=0, max_size=300),
    st.sampled_from(["", "# Title", "## Sub section", "### deep", "```", "```py", "~~~",
                     "Heading", "=======", "-----", "def f():", "    return 1", "x::"]),
)


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(_LINE, max_size=40), kind=st.sampled_from(["markdown", "rst", "text",
                                                                  "code"]),
       max_tokens=st.integers(16, 120), overlap=st.integers(0, 8))
def test_every_chunk_fits(lines: list[str], kind: str, max_tokens: int, overlap: int) -> None:
    text = "\n".join(lines)
    chunks = chunk_text(text, source="h.md", kind=kind, max_tokens=max_tokens,
                        overlap_tokens=overlap)
    _check_bounds(chunks, max_tokens)
    n_lines = text.count("\n") + 1
    assert all(chunk.end_line <= n_lines for chunk in chunks)
    if overlap == 0:
        joined = "".join(chunk.text for chunk in chunks)
        assert joined.split() == text.split()
