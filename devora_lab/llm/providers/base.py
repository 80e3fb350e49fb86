"""What every provider adapter does: build the HTTP request, parse answers and errors.

Adapters are pure: bytes and dicts in, typed values out. The clients own the sockets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from devora_lab.errors import MalformedResponseError, ProviderError
from devora_lab.llm.policy import error_for_status
from devora_lab.llm.sse import ServerSentEvent
from devora_lab.llm.types import Chunk, MessageLike, ToolCall, Usage

__all__ = ["ParsedCompletion", "ProviderAdapter", "RequestSpec", "StreamState"]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """An HTTP request to send; ``headers`` may hold the key, so it is never logged."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any]

    def __repr__(self) -> str:  # the headers carry the API key: never show them
        return f"RequestSpec(url={self.url!r}, body_keys={sorted(self.body)})"


@dataclass(frozen=True, slots=True)
class ParsedCompletion:
    """A provider's answer, normalised."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    response_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class StreamState(ABC):
    """Accumulates one streamed answer from its server-sent events."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.done = False

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def saw_content(self) -> bool:
        """Whether any text or tool call has arrived (after that, no fallback is possible)."""
        return bool(self.text_parts) or self.has_tool_calls

    @property
    @abstractmethod
    def has_tool_calls(self) -> bool: ...

    @abstractmethod
    def feed(self, event: ServerSentEvent) -> list[Chunk]:
        """Handle one event; return the chunks it yields. Raises ProviderError on an error
        event."""

    @abstractmethod
    def result(self) -> ParsedCompletion:
        """The whole answer once the stream ended."""


class ProviderAdapter(ABC):
    """One wire format (OpenAI chat completions, Anthropic messages)."""

    kind: str

    def __init__(self, name: str, base_url: str, api_key: str | None,
                 extra_headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.extra_headers = dict(extra_headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def api_key(self) -> str | None:
        return self._api_key

    @abstractmethod
    def chat_request(self, messages: Sequence[MessageLike], model: str, params: Mapping[str, Any],
                     *, stream: bool) -> RequestSpec: ...

    @abstractmethod
    def parse_chat(self, body: bytes, model: str) -> ParsedCompletion: ...

    @abstractmethod
    def new_stream(self, model: str) -> StreamState: ...

    def error(self, status: int, body: bytes, headers: Mapping[str, str],
              model: str) -> ProviderError:
        """The typed error for an HTTP error answer."""
        return error_for_status(status, _error_message(body), headers, provider=self.name,
                                model=model)

    def malformed(self, model: str, exc: Exception, wire_format: str) -> MalformedResponseError:
        """The error for an answer that parsed as JSON but lacks the expected fields."""
        return MalformedResponseError(
            f"{self.name} answered for {model} without the expected fields ({exc!r})",
            fix=f"check that base_url speaks the {wire_format} format",
            provider=self.name, model=model,
        )

    def decode(self, body: bytes | str, model: str) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"{self.name} sent an answer for {model} that is not JSON: {exc}",
                fix="retried automatically; check base_url points at the provider's API",
                provider=self.name, model=model,
            ) from None


def _error_message(body: bytes) -> str:
    """The human message inside an error body, whatever its shape."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            message = error.get("message") or error.get("type") or error.get("code")
            return str(message)[:500]
        if isinstance(error, str):
            return error[:500]
    return str(payload)[:300]
