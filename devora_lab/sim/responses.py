"""What the simulated model answers, independent of the wire format.

Both dialects normalise their request into a ``ChatRequest``; ``plan_answer`` turns it into
an ``Answer`` (text pieces, tool calls, finish reason, token counts) that the dialect then
renders as JSON or as server-sent events. Everything random is drawn from ``key``, a hash
of the server seed and the request body, so the same request always gets the same answer,
streamed or not.

Output lengths are drawn from the Azure code trace (``TraceModel.sample_tokens``), stretched
by the model's ``output_scale`` and capped by ``max_tokens`` and the model's output limit.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import orjson

from devora_lab.llm.tokens import count_tokens
from devora_lab.sim.models import ModelSpec
from devora_lab.sim.textgen import fill_schema, fragments, generate_pieces
from devora_lab.sim.traces import IntArray, TraceModel

__all__ = [
    "Answer", "ChatRequest", "Envelope", "Finish", "Frame", "GeneratedCall", "OutputLengths",
    "PromptUsage", "SimError", "ToolChoice", "ToolSpec", "optional_int", "plan_answer",
    "random_token", "request_key", "sse", "stop_sequences",
]

Finish = Literal["stop", "length", "stop_sequence", "tool_calls"]
ToolChoice = Literal["auto", "none", "required"]

AUTO_TOOL_SHARE: Final = 0.3
# Options that do not change what a model samples (a cap or a stop only truncates it).
_VOLATILE: Final = frozenset({"stream", "stream_options", "user", "metadata", "max_tokens",
                              "max_completion_tokens", "stop", "stop_sequences"})
_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TABLE_SIZE: Final = 8192
_JSON_OVERHEAD: Final = 6
_MASK: Final = (1 << 63) - 1


class SimError(Exception):
    """An error answer, rendered in each dialect's shape.

    ``kind`` is Anthropic's error type (``invalid_request_error``, ``not_found_error``...);
    OpenAI's type and ``code`` are derived from it or given.
    """

    def __init__(self, status: int, kind: str, message: str, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the request offers: its name and its parameters' JSON schema."""

    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat request normalised from either dialect."""

    model: str
    prompt_tokens: int
    key: int
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    forced_tool: str | None = None
    json_mode: bool = False
    json_schema: Mapping[str, Any] | None = None
    preamble: bool = False  # say a few words before an unforced tool call (Claude does)


@dataclass(frozen=True, slots=True)
class GeneratedCall:
    """A tool call: ``token`` is the random part of its id, ``arguments`` JSON text."""

    token: str
    name: str
    arguments: str
    fragments: tuple[str, ...]

    @property
    def input(self) -> Any:
        return orjson.loads(self.arguments)


@dataclass(frozen=True, slots=True)
class Answer:
    """One generated answer; ``pieces`` are the text as streamed (one token each for prose)."""

    pieces: tuple[str, ...]
    finish: Finish
    text_tokens: int
    tool_calls: tuple[GeneratedCall, ...] = ()
    tool_tokens: int = 0
    reasoning_tokens: int = 0
    stop_sequence: str | None = None
    text: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", "".join(self.pieces))

    @property
    def output_tokens(self) -> int:
        """Billed output tokens: visible text, tool calls and hidden reasoning."""
        return self.text_tokens + self.tool_tokens + self.reasoning_tokens


def request_key(seed: int, body: Mapping[str, Any]) -> int:
    """A 63-bit hash of the server seed and the request, ignoring options that only change
    how the answer is delivered or where it is cut."""
    stable = {key: value for key, value in body.items() if key not in _VOLATILE}
    canonical = orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(canonical, digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") & _MASK


def random_token(rng: random.Random, length: int) -> str:
    """``length`` base-62 characters, for ids."""
    return "".join(rng.choices(_ALPHABET, k=length))


class OutputLengths:
    """Output token counts from the fitted trace, one table per output scale.

    A table of ``_TABLE_SIZE`` joint draws is sampled once per scale from a generator
    seeded by the server seed; a request picks its entry by its key. That keeps the trace's
    distribution, costs no numpy call per request, and stays deterministic.
    """

    def __init__(self, seed: int, trace: str = "azure_code") -> None:
        self.seed = seed & _MASK
        self._model = TraceModel.from_fitted(trace)
        self._tables: dict[float, IntArray] = {}
        self._lock = threading.Lock()

    def draw(self, scale: float, key: int) -> int:
        table = self._tables.get(scale)
        if table is None:
            with self._lock:
                table = self._tables.get(scale)
                if table is None:
                    rng = np.random.default_rng([self.seed, round(scale * 1000)])
                    table = self._model.sample_tokens(rng, _TABLE_SIZE, output_scale=scale)[1]
                    self._tables[scale] = table
        return int(table[key % _TABLE_SIZE])


def plan_answer(request: ChatRequest, spec: ModelSpec, lengths: OutputLengths) -> Answer:
    """The answer to ``request``: a tool call, a JSON document or prose."""
    rng = random.Random(request.key)
    wants_tool = rng.random() < AUTO_TOOL_SHARE
    target = lengths.draw(spec.output_scale, request.key)
    cap = min(spec.max_output_tokens, request.max_tokens or spec.max_output_tokens)
    tool = _chosen_tool(request, rng, wants_tool=wants_tool)
    if tool is not None:
        return _tool_answer(request, tool, rng)
    if request.json_mode or request.json_schema is not None:
        answer = _json_answer(request, rng, min(target, cap))
    else:
        answer = _prose_answer(request, rng, target, cap)
    return _with_reasoning(answer, spec, cap)


def _chosen_tool(request: ChatRequest, rng: random.Random, *, wants_tool: bool
                 ) -> ToolSpec | None:
    if not request.tools or request.tool_choice == "none":
        return None
    if request.forced_tool is not None:
        return next(tool for tool in request.tools if tool.name == request.forced_tool)
    if request.tool_choice == "required" or wants_tool:
        return rng.choice(request.tools)
    return None


def _tool_answer(request: ChatRequest, tool: ToolSpec, rng: random.Random) -> Answer:
    arguments = orjson.dumps(fill_schema(tool.parameters, rng)).decode()
    call = GeneratedCall(random_token(rng, 24), tool.name, arguments,
                         tuple(fragments(arguments, rng)))
    pieces: tuple[str, ...] = ()
    if request.preamble and request.forced_tool is None and request.tool_choice == "auto":
        pieces = tuple(generate_pieces(rng, rng.randint(8, 16)))
    return Answer(pieces, "tool_calls", len(pieces), (call,),
                  tool_tokens=count_tokens(tool.name + arguments, request.model))


def _prose_answer(request: ChatRequest, rng: random.Random, target: int, cap: int) -> Answer:
    pieces = generate_pieces(rng, target, limit=cap)[:cap]
    finish: Finish = "length" if target > cap else "stop"
    if request.stop:
        cut = _stop_cut(pieces, request.stop)
        if cut is not None:
            kept, matched = cut
            text = "".join(kept)
            return Answer(tuple(kept), "stop_sequence", count_tokens(text, request.model),
                          stop_sequence=matched)
    return Answer(tuple(pieces), finish, len(pieces))


def _stop_cut(pieces: Sequence[str], stops: Sequence[str]) -> tuple[list[str], str] | None:
    """The pieces before the earliest stop sequence, and that sequence; None if absent."""
    text = "".join(pieces)
    found = [(text.find(stop), stop) for stop in stops if stop and stop in text]
    if not found:
        return None
    index, matched = min(found)
    kept: list[str] = []
    length = 0
    for piece in pieces:
        if length + len(piece) > index:
            if index > length:
                kept.append(piece[: index - length])
            break
        kept.append(piece)
        length += len(piece)
    return kept, matched


def _json_answer(request: ChatRequest, rng: random.Random, budget: int) -> Answer:
    """Valid JSON: the schema filled in, or ``{"answer": ...}`` in JSON mode, within budget."""
    if request.json_schema is not None:
        text = orjson.dumps(fill_schema(request.json_schema, rng)).decode()
    else:
        words = max(budget - _JSON_OVERHEAD, 1)
        while True:
            prose = "".join(generate_pieces(rng, words)).replace("\n\n", " ")
            text = orjson.dumps({"answer": prose}).decode()
            if words <= 1 or count_tokens(text, request.model) <= budget:
                break
            words = max(words - _JSON_OVERHEAD, 1)
    return Answer(tuple(fragments(text, rng)), "stop", count_tokens(text, request.model))


def _with_reasoning(answer: Answer, spec: ModelSpec, cap: int) -> Answer:
    """Add hidden reasoning tokens for o-series models, within the same output cap."""
    if spec.reasoning_ratio <= 0:
        return answer
    reasoning = min(round(answer.text_tokens * spec.reasoning_ratio),
                    max(cap - answer.text_tokens, 0))
    return Answer(answer.pieces, answer.finish, answer.text_tokens, answer.tool_calls,
                  answer.tool_tokens, reasoning, answer.stop_sequence)


@dataclass(frozen=True, slots=True)
class Frame:
    """One server-sent event, complete with its blank line; ``content`` frames carry output
    tokens, so streaming paces them and faults cut or break the stream among them."""

    data: bytes
    content: bool = False


@dataclass(frozen=True, slots=True)
class PromptUsage:
    """Input tokens of a request: all of them, and the parts read from and written to the
    prompt cache."""

    tokens: int
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every rendering of one answer shares: its id, time and served model name."""

    id: str
    created: int
    model: str


def sse(data: bytes, event: str | None = None) -> bytes:
    """One server-sent event carrying ``data`` (a single line of JSON)."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


def optional_int(body: Mapping[str, Any], name: str, minimum: int = 1) -> int | None:
    """``body[name]`` as an int of at least ``minimum``, ``None`` when absent; 400 else."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SimError(400, "invalid_request_error",
                       f"{name}: must be an integer of at least {minimum}", param=name)
    return value


def stop_sequences(value: Any, name: str) -> tuple[str, ...]:
    """A ``stop`` / ``stop_sequences`` value as a tuple of strings; 400 if malformed."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise SimError(400, "invalid_request_error", f"{name}: must be a string or a list of "
                   "strings", param=name)
