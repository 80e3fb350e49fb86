"""The values the LLM client takes and returns, the same for every provider.

Messages are plain dicts in the OpenAI chat format (``{"role": "user", "content": "..."}``),
the lingua franca agent code already speaks; the Anthropic provider translates them.
Results are frozen dataclasses with usage normalised so that nothing is double-counted:
``input_tokens`` counts every input token, and the cached ones are a part of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

import orjson

__all__ = [
    "Chunk",
    "Completion",
    "CostEstimate",
    "Message",
    "MessageLike",
    "Role",
    "ToolCall",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]


class Message(TypedDict, total=False):
    """One chat message in the OpenAI format."""

    role: Role
    content: str | list[dict[str, Any]] | None
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str


MessageLike: TypeAlias = Message | Mapping[str, Any]
"""A ``Message`` or any mapping of the same shape (plain dicts in untyped code)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` is the JSON text it produced."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (raises ``orjson.JSONDecodeError`` if invalid)."""
        return orjson.loads(self.arguments) if self.arguments else {}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage, normalised across providers.

    ``input_tokens`` includes ``cached_input_tokens`` (read from the provider's prompt cache)
    and ``cache_creation_input_tokens`` (written to it). OpenAI already reports prompt tokens
    that way; Anthropic reports the three separately, so its total is their sum.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        return self.input_tokens - self.cached_input_tokens - self.cache_creation_input_tokens


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a streamed answer: new text, tool-call fragments, or the end."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer with everything needed to account for it."""

    text: str
    model: str
    requested_model: str
    provider: str
    usage: Usage
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    cost_usd: float | None = None
    cost_status: str = "unpriced"
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    attempts: int = 1
    fallback_index: int = 0
    request_id: str = ""
    response_id: str | None = None
    cached: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """What a call may cost before it is sent (for budgets and context checks).

    ``input_tokens`` is exact for OpenAI models and a tiktoken estimate for others
    (``exact`` says which); ``max_cost_usd`` assumes the answer uses all of
    ``max_output_tokens``. Costs are ``None`` for models the price book does not know.
    """

    model: str
    input_tokens: int
    max_output_tokens: int
    exact: bool
    input_cost_usd: float | None
    max_cost_usd: float | None
    context_window: int | None

    @property
    def fits(self) -> bool:
        """Whether prompt plus the whole output reserve fit the context window (if known)."""
        window = self.context_window
        return window is None or self.input_tokens + self.max_output_tokens <= window
