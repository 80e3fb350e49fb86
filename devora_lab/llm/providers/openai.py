"""The OpenAI chat-completions wire format: OpenAI, OpenRouter, vLLM, Ollama, LM Studio...

Usage arrives with cached tokens already inside ``prompt_tokens``; streams ask for a final
usage chunk with ``stream_options.include_usage``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from devora_lab.errors import ProviderError
from devora_lab.llm.providers.base import (
    ParsedCompletion,
    ProviderAdapter,
    RequestSpec,
    StreamState,
)
from devora_lab.llm.sse import ServerSentEvent
from devora_lab.llm.types import Chunk, MessageLike, ToolCall, Usage

__all__ = ["OpenAIAdapter", "usage_from_openai"]


def usage_from_openai(payload: Mapping[str, Any] | None) -> Usage:
    """Normalise an OpenAI ``usage`` object (cached tokens are part of prompt tokens)."""
    if not payload:
        return Usage()
    prompt_details = payload.get("prompt_tokens_details") or {}
    completion_details = payload.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(payload.get("prompt_tokens") or 0),
        output_tokens=int(payload.get("completion_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


class OpenAIAdapter(ProviderAdapter):
    """Chat completions at ``<base_url>/chat/completions``."""

    kind = "openai"

    def chat_request(self, messages: Sequence[MessageLike], model: str, params: Mapping[str, Any],
                     *, stream: bool) -> RequestSpec:
        body: dict[str, Any] = {"model": model, "messages": list(messages), **params}
        if stream:
            body["stream"] = True
            options = dict(body.get("stream_options") or {})
            options.setdefault("include_usage", True)
            body["stream_options"] = options
        headers = {"content-type": "application/json", **self.extra_headers}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return RequestSpec(f"{self.base_url}/chat/completions", headers, body)

    def parse_chat(self, body: bytes, model: str) -> ParsedCompletion:
        payload = self.decode(body, model)
        try:
            choice = payload["choices"][0]
            message = choice.get("message") or {}
            tool_calls = tuple(
                ToolCall(call.get("id", ""), call["function"]["name"],
                         call["function"].get("arguments") or "")
                for call in message.get("tool_calls") or ()
            )
            return ParsedCompletion(
                text=message.get("content") or "",
                model=payload.get("model") or model,
                usage=usage_from_openai(payload.get("usage")),
                finish_reason=choice.get("finish_reason"),
                tool_calls=tool_calls,
                response_id=payload.get("id"),
                raw=payload,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self.malformed(model, exc, "OpenAI chat-completions") from None

    def new_stream(self, model: str) -> StreamState:
        return _OpenAIStream(self, model)


class _OpenAIStream(StreamState):
    def __init__(self, adapter: OpenAIAdapter, model: str) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = model
        self.served_model = model
        self.response_id: str | None = None
        self.finish_reason: str | None = None
        self.usage = Usage()
        self._calls: dict[int, dict[str, str]] = {}

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._calls)

    def feed(self, event: ServerSentEvent) -> list[Chunk]:
        if event.data.strip() == "[DONE]":
            self.done = True
            return []
        payload = self.adapter.decode(event.data, self.model)
        if not isinstance(payload, dict):
            return []
        if "error" in payload:
            raise self._error(payload["error"])
        self.served_model = payload.get("model") or self.served_model
        self.response_id = payload.get("id") or self.response_id
        chunks: list[Chunk] = []
        for choice in payload.get("choices") or ():
            chunks.extend(self._choice(choice))
        if payload.get("usage"):
            self.usage = usage_from_openai(payload["usage"])
            chunks.append(Chunk(usage=self.usage))
        return chunks

    def _choice(self, choice: Mapping[str, Any]) -> list[Chunk]:
        delta = choice.get("delta") or {}
        chunks: list[Chunk] = []
        text = delta.get("content")
        if text:
            self.text_parts.append(text)
            chunks.append(Chunk(text=text))
        for call in delta.get("tool_calls") or ():
            slot = self._calls.setdefault(int(call.get("index", 0)),
                                          {"id": "", "name": "", "arguments": ""})
            function = call.get("function") or {}
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] = function.get("name") or slot["name"]
            slot["arguments"] += function.get("arguments") or ""
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
            chunks.append(Chunk(tool_calls=self._tool_calls(), finish_reason=self.finish_reason))
        return chunks

    def _tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(slot["id"], slot["name"], slot["arguments"])
                     for _, slot in sorted(self._calls.items()))

    def _error(self, error: Any) -> ProviderError:
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        status = 500
        if isinstance(error, dict) and isinstance(error.get("code"), int):
            status = int(error["code"])
        body = orjson.dumps({"error": {"message": message}})
        return self.adapter.error(status, body, {}, self.model)

    def result(self) -> ParsedCompletion:
        return ParsedCompletion(self.text, self.served_model, self.usage, self.finish_reason,
                                self._tool_calls(), self.response_id)
