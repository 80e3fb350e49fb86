"""Split documents into token-bounded chunks for retrieval.

``chunk_text`` splits first at section boundaries (Markdown ``#`` headings, reStructuredText
titles, top-level ``def``/``class``/``function`` lines in code), then at blank-line
paragraphs; a fenced code block or an RST literal block stays whole when it fits. A block
too big for one chunk is split by lines, and a single line too long by tokens. Each chunk
carries its heading path ("Install > Linux") and starts with up to ``overlap_tokens`` of
the previous chunk's tail when both lie in the same section. No chunk ever exceeds
``max_tokens`` (tiktoken counts for ``encoding_model``). Chunk text is an exact slice of
the source (plus the overlap), so with ``overlap_tokens=0`` the chunks concatenate back
to the document, give or take whitespace-only runs.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from devora_lab.errors import DevoraWarning
from devora_lab.llm.tokens import encoding_for

if TYPE_CHECKING:
    import tiktoken

__all__ = ["KINDS", "Chunk", "chunk_text", "kind_for", "read_document"]

KINDS: Final = ("markdown", "rst", "text", "code")
_CODE_EXTENSIONS: Final = frozenset({
    ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".java", ".kt", ".kts",
    ".scala", ".go", ".rs", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".rb",
    ".php", ".swift", ".m", ".lua", ".r", ".jl", ".sh", ".bash", ".zsh", ".sql", ".ex", ".exs",
    ".erl", ".hs", ".ml", ".clj", ".dart", ".pl", ".ps1", ".vue", ".svelte"})
_EXTENSIONS: Final = {".md": "markdown", ".markdown": "markdown", ".rst": "rst",
                      ".txt": "text"}
_MD_HEADING: Final = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?\s*$")
_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ADORNMENT: Final = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")
_LITERAL_DIRECTIVE: Final = re.compile(r"^\s*\.\.\s+(code-block|code|sourcecode)::")
_CODE_DEF: Final = re.compile(
    r"^(?:export\s+(?:default\s+)?)?(?:pub(?:\([\w:]+\))?\s+)?(?:async\s+)?"
    r"(?P<kw>def|class|function|func|fn|impl|struct|interface|enum|trait)\b"
    r"\s*\*?\s*(?:\([^)]*\)\s*)?(?P<name>[A-Za-z_$][\w$]*)")
_PEEK_BYTES: Final = 8192


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document, with where it came from."""

    text: str
    source: str
    title: str | None
    heading: str | None  # the heading path, e.g. "Install > Linux"
    position: int  # 0-based index of the chunk in its document
    start_line: int  # 1-based, inclusive, of the first character (overlap included)
    end_line: int  # 1-based, inclusive, of the last character
    tokens: int
    content_hash: str  # sha256 hex digest of ``text``
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class _Block:
    lines: list[str]
    start_line: int


@dataclass
class _Section:
    path: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)


class _Builder:
    """Collects lines into blank-line-separated blocks within sections."""

    def __init__(self) -> None:
        self.sections = [_Section(())]
        self._lines: list[str] = []
        self._start = 1

    def add(self, lineno: int, line: str) -> None:
        if not self._lines:
            self._start = lineno
        self._lines.append(line)

    def flush(self) -> None:
        if self._lines:
            self.sections[-1].blocks.append(_Block(self._lines, self._start))
            self._lines = []

    def blank(self, lineno: int, line: str) -> None:
        """A blank line ends the open block, or joins the previous one."""
        blocks = self.sections[-1].blocks
        if self._lines or not blocks:
            self.add(lineno, line)
            self.flush()
        else:
            blocks[-1].lines.append(line)

    def section(self, path: tuple[str, ...]) -> None:
        self.flush()
        self.sections.append(_Section(path))

    @property
    def open(self) -> bool:
        return bool(self._lines)


def _split_lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _parse_markdown(lines: list[str]) -> tuple[list[_Section], str | None]:
    builder, stack, title = _Builder(), list[tuple[int, str]](), None
    fence: str | None = None
    for lineno, line in enumerate(lines, 1):
        if fence is not None:
            builder.add(lineno, line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
                builder.flush()
        elif opening := _FENCE.match(line):
            builder.flush()
            fence = opening.group(1)
            builder.add(lineno, line)
        elif (heading := _MD_HEADING.match(line)) and heading.group(2).strip():
            level, name = len(heading.group(1)), heading.group(2).strip()
            title = name if title is None and level == 1 else title
            stack = [(lvl, text) for lvl, text in stack if lvl < level] + [(level, name)]
            builder.section(tuple(text for _, text in stack))
            builder.add(lineno, line)
            builder.flush()
        elif not line.strip():
            builder.blank(lineno, line)
        else:
            builder.add(lineno, line)
    builder.flush()
    return builder.sections, title


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _parse_rst(lines: list[str]) -> tuple[list[_Section], str | None]:
    builder, styles, stack = _Builder(), list[tuple[str, bool]](), list[str]()
    title: str | None = None
    literal_base: int | None = None
    i = 0
    while i < len(lines):
        line, lineno = lines[i], i + 1
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        after = lines[i + 2] if i + 2 < len(lines) else ""
        size = 0  # lines a title takes: 2 (text + underline) or 3 (overline too)
        if not builder.open and line.strip():
            over = _ADORNMENT.match(line)
            if over and nxt.strip() and _ADORNMENT.match(after) and after.strip() == line.strip():
                size, name, style = 3, nxt.strip(), (line.strip()[0], True)
            elif not over and _indent(line) == 0 and (under := _ADORNMENT.match(nxt)):
                size, name, style = 2, line.strip(), (under.group(1), False)
        if size:
            if style not in styles:
                styles.append(style)
            level = styles.index(style)
            stack = [*stack[:level], name]
            title = name if title is None else title
            builder.section(tuple(stack))
            for offset in range(size):
                builder.add(lineno + offset, lines[i + offset])
            builder.flush()
            i += size
            literal_base = None
            continue
        if literal_base is not None and line.strip() and _indent(line) > literal_base:
            builder.flush()  # the literal block: indented or blank lines, kept together
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > literal_base):
                builder.add(i + 1, lines[i])
                i += 1
            builder.flush()
            literal_base = None
            continue
        if not line.strip():
            builder.blank(lineno, line)
        else:
            literal = line.rstrip().endswith("::") or _LITERAL_DIRECTIVE.match(line)
            literal_base = _indent(line) if literal else None
            builder.add(lineno, line)
        i += 1
    builder.flush()
    return builder.sections, title


def _parse_plain(lines: list[str], *, code: bool) -> list[_Section]:
    starts: dict[int, str] = {}
    if code:
        for index, line in enumerate(lines):
            if match := _CODE_DEF.match(line):
                heading = f"{match.group('kw')} {match.group('name')}"
                first = index
                while first > 0 and lines[first - 1].startswith(("@", "#", "//")):
                    first -= 1
                starts.setdefault(first, heading)
    builder = _Builder()
    for index, line in enumerate(lines):
        if index in starts:
            builder.section((starts[index],))
        if line.strip():
            builder.add(index + 1, line)
        else:
            builder.blank(index + 1, line)
    builder.flush()
    return builder.sections


class _Counter:
    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    def __call__(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def split(self, text: str, budget: int) -> list[str]:
        """Split one line into pieces of at most ``budget`` tokens, at character bounds."""
        data = text.encode()
        offsets = [0]
        for token in self.encoding.encode(text, disallowed_special=()):
            offsets.append(offsets[-1] + len(self.encoding.decode_single_token_bytes(token)))

        def boundary(index: int) -> bool:
            return offsets[index] == len(data) or (data[offsets[index]] & 0xC0) != 0x80

        pieces, start = [], 0
        while start < len(offsets) - 1:
            end = min(start + budget, len(offsets) - 1)
            while True:
                while end > start + 1 and not boundary(end):
                    end -= 1
                while not boundary(end):  # one character longer than the budget
                    end += 1
                piece = data[offsets[start]:offsets[end]].decode()
                if end <= start + 1 or self(piece) <= budget:
                    break
                end -= 1
            pieces.append(piece)
            start = end
        return pieces

    def tail(self, text: str, limit: int) -> str:
        """A suffix of ``text`` of at most ``limit`` tokens (and half of it), from a word start."""
        if limit <= 0:
            return ""
        ids = self.encoding.encode(text, disallowed_special=())
        limit = min(limit, len(ids) // 2)  # never repeat a whole short chunk
        if limit <= 0:
            return ""
        tail = self.encoding.decode_bytes(ids[-limit:]).decode(errors="ignore")
        while tail and self(tail) > limit:
            tail = tail[1:]
        cut = len(text) - len(tail)
        if tail and not tail[0].isspace() and not text[cut - 1].isspace():
            space = next((n for n, char in enumerate(tail) if char.isspace()), None)
            if space is not None and space + 1 < len(tail):
                tail = tail[space + 1:]
        return tail


def _pieces(block: _Block, count: _Counter, max_tokens: int, budget: int) -> list[_Block]:
    """The block whole if it fits in a chunk, else groups of lines of ``budget`` tokens."""
    if count("".join(block.lines)) <= max_tokens:
        return [block]
    pieces: list[_Block] = []
    group: list[str] = []
    start = block.start_line
    for lineno, line in enumerate(block.lines, block.start_line):
        if group and count("".join([*group, line])) <= budget:
            group.append(line)
            continue
        if group:
            pieces.append(_Block(group, start))
        group, start = [line], lineno
        if count(line) > budget:
            pieces.extend(_Block([part], lineno) for part in count.split(line, budget))
            group = []
    if group:
        pieces.append(_Block(group, start))
    return pieces


def _pack(section: _Section, count: _Counter, max_tokens: int,
          overlap: int) -> list[tuple[str, int]]:
    """Greedily join a section's pieces into chunk texts, each with its start line."""
    chunks: list[tuple[str, int]] = []
    text, start = "", 0
    for block in section.blocks:
        for piece in _pieces(block, count, max_tokens, max_tokens - overlap):
            body = "".join(piece.lines)
            if text and count(text + body) <= max_tokens:
                text += body
                continue
            if text:
                chunks.append((text, start))
            text, start = body, piece.start_line
            if chunks:
                previous, first = chunks[-1]
                limit = overlap
                while limit > 0:
                    tail = count.tail(previous, limit)
                    if tail and count(tail + body) <= max_tokens:
                        end = first + previous[:-1].count("\n")
                        text, start = tail + body, end - tail[:-1].count("\n")
                        break
                    limit //= 2
    if text:
        chunks.append((text, start))
    return chunks


def chunk_text(text: str, *, source: str, kind: str, max_tokens: int = 400,
               overlap_tokens: int = 50, encoding_model: str = "gpt-4o",
               metadata: Mapping[str, Any] | None = None) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens.

    ``kind`` is one of ``KINDS``; ``metadata`` is copied onto every chunk, with ``kind``
    added unless given. ``max_tokens`` must be at least 16; ``overlap_tokens`` is capped
    at ``max_tokens // 2``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if max_tokens < 16 or overlap_tokens < 0:
        raise ValueError("need max_tokens >= 16 and overlap_tokens >= 0")
    overlap_tokens = min(overlap_tokens, max_tokens // 2)
    if not text.strip():
        return []
    lines = _split_lines(text)
    title: str | None = None
    if kind == "markdown":
        sections, title = _parse_markdown(lines)
    elif kind == "rst":
        sections, title = _parse_rst(lines)
    else:
        sections = _parse_plain(lines, code=kind == "code")
    title = title or Path(source).stem or None
    extra = {"kind": kind, **(metadata or {})}
    count = _Counter(encoding_for(encoding_model))
    chunks: list[Chunk] = []
    for section in sections:
        heading = " > ".join(section.path) or None
        for body, start in _pack(section, count, max_tokens, overlap_tokens):
            if not body.strip():
                continue
            chunks.append(Chunk(
                text=body, source=source, title=title, heading=heading,
                position=len(chunks), start_line=start,
                end_line=start + body[:-1].count("\n"), tokens=count(body),
                content_hash=hashlib.sha256(body.encode()).hexdigest(),
                metadata=dict(extra)))
    return chunks


def kind_for(path: str | Path) -> str | None:
    """The chunking kind for a file name, by extension; None for unsupported files."""
    suffix = Path(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    return "code" if suffix in _CODE_EXTENSIONS else None


def read_document(path: str | Path) -> str | None:
    """A text file's contents ("" when empty); None, with a DevoraWarning, for binary files.

    A file is binary when its first 8 KB hold a NUL byte or it is not valid UTF-8.
    Newlines are normalised to ``\\n`` and a UTF-8 byte-order mark is dropped.
    """
    data = Path(path).read_bytes()
    reason = "it holds NUL bytes" if b"\x00" in data[:_PEEK_BYTES] else None
    if reason is None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            reason = "it is not valid UTF-8"
    if reason is not None:
        warnings.warn(f"skipping {path}: {reason} (binary file?)", DevoraWarning, stacklevel=2)
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")
