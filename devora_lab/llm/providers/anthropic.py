"""The Anthropic Messages wire format.

Messages arrive in the OpenAI format and are translated: system messages become the
``system`` field, tool calls become ``tool_use`` blocks and tool results ``tool_result``
blocks. Anthropic reports uncached, cache-read and cache-write input tokens separately; the
normalised ``input_tokens`` is their sum, so costs never count a token twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from devora_lab.errors import BadRequestError, ProviderError
from devora_lab.llm.providers.base import (
    ParsedCompletion,
    ProviderAdapter,
    RequestSpec,
    StreamState,
)
from devora_lab.llm.sse import ServerSentEvent
from devora_lab.llm.types import Chunk, MessageLike, ToolCall, Usage

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter", "usage_from_anthropic"]

ANTHROPIC_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 4096  # Anthropic requires max_tokens; OpenAI does not
_FINISH: Final = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "tool_use": "tool_calls", "refusal": "content_filter"}
_PASSTHROUGH: Final = ("temperature", "top_p", "top_k", "metadata", "thinking",
                       "service_tier")
_ERROR_STATUS: Final = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500,
                        "invalid_request_error": 400, "authentication_error": 401,
                        "permission_error": 403, "not_found_error": 404,
                        "request_too_large": 413}


def usage_from_anthropic(payload: Mapping[str, Any] | None) -> Usage:
    """Normalise Anthropic usage: input_tokens = uncached + cache reads + cache writes."""
    if not payload:
        return Usage()
    read = int(payload.get("cache_read_input_tokens") or 0)
    write = int(payload.get("cache_creation_input_tokens") or 0)
    return Usage(
        input_tokens=int(payload.get("input_tokens") or 0) + read + write,
        output_tokens=int(payload.get("output_tokens") or 0),
        cached_input_tokens=read,
        cache_creation_input_tokens=write,
    )


class AnthropicAdapter(ProviderAdapter):
    """Messages at ``<base_url>/v1/messages`` (base_url without ``/v1``)."""

    kind = "anthropic"

    def chat_request(self, messages: Sequence[MessageLike], model: str, params: Mapping[str, Any],
                     *, stream: bool) -> RequestSpec:
        system, converted = _convert_messages(messages)
        body: dict[str, Any] = {"model": model, "messages": converted,
                                "max_tokens": params.get("max_tokens")
                                or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS}
        if system:
            body["system"] = system
        body.update({key: params[key] for key in _PASSTHROUGH if key in params})
        if params.get("stop") is not None:
            stop = params["stop"]
            body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if params.get("tools"):
            body["tools"] = [_convert_tool(tool) for tool in params["tools"]]
        if params.get("tool_choice") is not None:
            body["tool_choice"] = _convert_tool_choice(params["tool_choice"])
        if stream:
            body["stream"] = True
        headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION,
                   **self.extra_headers}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return RequestSpec(f"{self.base_url}/v1/messages", headers, body)

    def parse_chat(self, body: bytes, model: str) -> ParsedCompletion:
        payload = self.decode(body, model)
        try:
            texts = [b["text"] for b in payload["content"] if b.get("type") == "text"]
            calls = tuple(ToolCall(b["id"], b["name"], orjson.dumps(b.get("input", {})).decode())
                          for b in payload["content"] if b.get("type") == "tool_use")
            return ParsedCompletion(
                text="".join(texts),
                model=payload.get("model") or model,
                usage=usage_from_anthropic(payload.get("usage")),
                finish_reason=_finish(payload.get("stop_reason")),
                tool_calls=calls,
                response_id=payload.get("id"),
                raw=payload,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise self.malformed(model, exc, "Anthropic Messages") from None

    def new_stream(self, model: str) -> StreamState:
        return _AnthropicStream(self, model)

    def error_from_event(self, error: Mapping[str, Any], model: str) -> ProviderError:
        status = _ERROR_STATUS.get(str(error.get("type")), 500)
        return self.error(status, orjson.dumps({"error": error}), {}, model)


def _finish(reason: str | None) -> str | None:
    return None if reason is None else _FINISH.get(reason, reason)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _convert_messages(messages: Sequence[MessageLike]) -> tuple[str | list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
    system_blocks: list[dict[str, Any]] = []
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system_blocks.extend(_user_blocks(message.get("content")))
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""),
                     "content": _text_of(message.get("content"))}
            _append(converted, "user", [block])
        elif role == "assistant":
            _append(converted, "assistant", _assistant_blocks(message))
        elif role == "user":
            _append(converted, "user", _user_blocks(message.get("content")))
        else:
            raise BadRequestError(f"message role {role!r} is not supported",
                                  fix="use system, user, assistant or tool")
    return _system(system_blocks), converted


def _system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A plain string unless a block carries more than text (cache_control): keep those as is.
    if all(set(block) == {"type", "text"} for block in blocks):
        return "\n\n".join(block["text"] for block in blocks if block["text"])
    return blocks


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content or ""}]
    return [_user_block(part) for part in content]


def _user_block(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "image_url":
        url = str((part.get("image_url") or {}).get("url", ""))
        if url.startswith("data:") and ";base64," in url:
            media_type, data = url[5:].split(";base64,", 1)
            return {"type": "image",
                    "source": {"type": "base64", "media_type": media_type, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    if kind in ("input_audio", "file"):
        raise BadRequestError(f"Anthropic models do not accept {kind} message parts",
                              fix="send text or images to Anthropic, or use an OpenAI model")
    return dict(part)  # text and Anthropic-native blocks (image, document, cache_control...)


def _assistant_blocks(message: MessageLike) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise BadRequestError(
                f"tool call {call.get('id', '?')} in the history has arguments that are not "
                "JSON", fix="repair or drop that assistant message before sending it again",
            ) from None
        blocks.append({"type": "tool_use", "id": call.get("id", ""),
                       "name": function.get("name", ""), "input": parsed})
    return blocks


def _append(converted: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants user and assistant turns to alternate: merge consecutive same-role turns.
    if converted and converted[-1]["role"] == role:
        converted[-1]["content"].extend(blocks)
    else:
        converted.append({"role": role, "content": blocks})


def _convert_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    return {"name": function["name"], "description": function.get("description", ""),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}


def _convert_tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, Mapping) and "function" in choice:
        return {"type": "tool", "name": choice["function"]["name"]}
    return dict(choice) if isinstance(choice, Mapping) else {"type": str(choice)}


class _AnthropicStream(StreamState):
    def __init__(self, adapter: AnthropicAdapter, model: str) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = model
        self.served_model = model
        self.response_id: str | None = None
        self.finish_reason: str | None = None
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, dict[str, str]] = {}

    @property
    def has_tool_calls(self) -> bool:
        return bool(self._blocks)

    def feed(self, event: ServerSentEvent) -> list[Chunk]:
        if event.event == "ping" or not event.data.strip():
            return []
        payload = self.adapter.decode(event.data, self.model)
        kind = payload.get("type", event.event)
        handler = getattr(self, f"_on_{kind}", None)
        return handler(payload) if handler is not None else []

    def _on_error(self, payload: Mapping[str, Any]) -> list[Chunk]:
        raise self.adapter.error_from_event(payload.get("error") or {}, self.model)

    def _on_message_start(self, payload: Mapping[str, Any]) -> list[Chunk]:
        message = payload.get("message") or {}
        self.served_model = message.get("model") or self.served_model
        self.response_id = message.get("id")
        self._usage.update(message.get("usage") or {})
        return []

    def _on_content_block_start(self, payload: Mapping[str, Any]) -> list[Chunk]:
        block = payload.get("content_block") or {}
        if block.get("type") == "tool_use":
            self._blocks[int(payload.get("index", 0))] = {
                "id": block.get("id", ""), "name": block.get("name", ""), "arguments": ""}
        return []

    def _on_content_block_delta(self, payload: Mapping[str, Any]) -> list[Chunk]:
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            self.text_parts.append(delta["text"])
            return [Chunk(text=delta["text"])]
        if delta.get("type") == "input_json_delta":
            slot = self._blocks.get(int(payload.get("index", 0)))
            if slot is not None:
                slot["arguments"] += delta.get("partial_json", "")
        return []

    def _on_message_delta(self, payload: Mapping[str, Any]) -> list[Chunk]:
        # message_delta usage is cumulative: it replaces, never adds to, what we have.
        self._usage.update(payload.get("usage") or {})
        reason = (payload.get("delta") or {}).get("stop_reason")
        if reason:
            self.finish_reason = _finish(reason)
        return []

    def _on_message_stop(self, payload: Mapping[str, Any]) -> list[Chunk]:
        self.done = True
        return [Chunk(tool_calls=self._tool_calls(), finish_reason=self.finish_reason,
                      usage=usage_from_anthropic(self._usage))]

    def _tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(slot["id"], slot["name"], slot["arguments"] or "{}")
                     for _, slot in sorted(self._blocks.items()))

    def result(self) -> ParsedCompletion:
        return ParsedCompletion(self.text, self.served_model, usage_from_anthropic(self._usage),
                                self.finish_reason, self._tool_calls(), self.response_id)
