"""Generated answers: pseudo-English whose token count is known without a tokenizer.

Every word of ``VOCABULARY`` is a single token in both ``cl100k_base`` and ``o200k_base``,
with or without a leading space and capitalised or not; ``.``, ``,`` and ``.\\n\\n`` are
single tokens too, and the pre-tokenisers of both encodings never merge them with a
neighbouring word. So a text built from ``n`` of these pieces is exactly ``n`` tokens for
every model the simulator serves, and streaming one piece per chunk is one token per chunk,
as providers stream. ``tests/sim/test_server.py`` checks the claim against tiktoken.

``fill_schema`` builds a JSON value that satisfies the required part of a JSON schema, for
tool-call arguments and structured outputs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["VOCABULARY", "fill_schema", "fragments", "generate_pieces"]

_WORDS: Final = """
the of and to in is that for it as was with be by on not this are or from at which but have
an they you were there been one all we their has would when if so no will more can who its
out into up them only some time could than other then these two may first new like our very
over such after most also made many before must through years where much should well people
because each just those how good any great same state own world still while last never life
here under both long being work day between even little house year place know old part back
down take used again form model data system value code test file user request answer token
cache server client query table stream error event small large fast slow simple clear early
later next often always every change build check read write send keep find give show make
start run open close plan step result reason number line point group order level field price
cost rate limit window prompt agent tool call function method class object list string map
graph"""
VOCABULARY: Final = tuple(_WORDS.split())
_SPACED: Final = tuple(" " + word for word in VOCABULARY)

_SENTENCE: Final = (5, 16)  # words per sentence
_PARAGRAPH: Final = (3, 6)  # sentences per paragraph
_COMMA_P: Final = 0.4  # share of sentences with a comma
_COMMA_MIN_WORDS: Final = 6
_MAX_DEPTH: Final = 4


def generate_pieces(rng: random.Random, n_tokens: int, limit: int | None = None) -> list[str]:
    """``n_tokens`` single-token pieces forming sentences and paragraphs.

    The text ends with a full stop when ``n_tokens`` allows it, so a complete answer reads
    as complete. ``limit`` stops generating early (at least ``limit`` pieces come back, the
    same as the first pieces of the full text): callers truncate to it to simulate
    ``max_tokens``, so a capped answer is a prefix of the uncapped one, as with real models.
    """
    pieces: list[str] = []
    sentences_left = rng.randint(*_PARAGRAPH)
    stop_at = n_tokens if limit is None else min(n_tokens, limit)
    while len(pieces) < stop_at:
        remaining = n_tokens - len(pieces)
        words = min(rng.randint(*_SENTENCE), remaining)
        if remaining - words == 1:
            words += 1  # never leave a single dangling token for the next sentence
        sentences_left -= 1
        end = ".\n\n" if sentences_left == 0 else "."
        if sentences_left == 0:
            sentences_left = rng.randint(*_PARAGRAPH)
        lead = "" if not pieces or pieces[-1] == ".\n\n" else " "
        pieces.extend(_sentence(rng, words, end, lead))
    return pieces


def _sentence(rng: random.Random, n_tokens: int, end: str, lead: str) -> list[str]:
    """One sentence of exactly ``n_tokens`` pieces (the last is ``end`` when n > 1)."""
    if n_tokens <= 1:
        return [lead + rng.choice(VOCABULARY).capitalize()][:n_tokens]
    words = n_tokens - 1
    comma = words >= _COMMA_MIN_WORDS and rng.random() < _COMMA_P
    out = rng.choices(_SPACED, k=words - comma)
    out[0] = lead + out[0][1:].capitalize()
    if comma:
        out.insert(rng.randint(2, len(out) - 2), ",")
    out.append(end)
    return out


def fragments(text: str, rng: random.Random, low: int = 3, high: int = 9) -> list[str]:
    """``text`` cut into short pieces, as providers stream JSON arguments."""
    parts: list[str] = []
    start = 0
    while start < len(text):
        step = rng.randint(low, high)
        parts.append(text[start:start + step])
        start += step
    return parts


def fill_schema(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A JSON value satisfying ``schema``'s type, enum and required properties.

    Only the constraints models routinely face are honoured (type, enum, const, required,
    items, anyOf/oneOf, minimum); optional properties are left out, as models often do.
    """
    if not isinstance(schema, Mapping):
        return rng.choice(VOCABULARY)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(list(schema["enum"]))
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return fill_schema(options[0], rng, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _fill_typed(str(kind), schema, rng, depth)


def _fill_typed(kind: str, schema: Mapping[str, Any], rng: random.Random, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or () if isinstance(name, str)]
        if depth >= _MAX_DEPTH:
            return {}
        return {name: fill_schema(properties.get(name, {}), rng, depth + 1) for name in required}
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1) if depth < _MAX_DEPTH else 0
        return [fill_schema(schema.get("items", {}), rng, depth + 1) for _ in range(count)]
    return _fill_scalar(kind, schema, rng)


def _fill_scalar(kind: str, schema: Mapping[str, Any], rng: random.Random) -> Any:
    if kind == "integer":
        low = int(schema.get("minimum", 1))
        return rng.randint(low, max(int(schema.get("maximum", low + 99)), low))
    if kind == "number":
        start = float(schema.get("minimum", 0.0))
        return round(rng.uniform(start, float(schema.get("maximum", start + 100.0))), 2)
    if kind in ("boolean", "null"):
        return rng.random() < 0.5 if kind == "boolean" else None
    return _fill_string(schema, rng)


def _fill_string(schema: Mapping[str, Any], rng: random.Random) -> str:
    formats = {"date": "2024-05-17", "date-time": "2024-05-17T09:30:00Z",
               "email": "someone@example.com", "uri": "https://example.com/docs",
               "uuid": "3f2b8c1e-8d4a-4e7b-9a61-2c5d0f4e7a90"}
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in formats:
        return formats[fmt]
    count = rng.randint(1, 3)
    return " ".join(rng.choice(VOCABULARY) for _ in range(count))
