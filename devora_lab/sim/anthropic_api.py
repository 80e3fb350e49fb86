"""The Anthropic dialect: Messages (JSON and named SSE events) and error bodies.

Usage follows Anthropic's convention: ``input_tokens`` excludes the cache parts, which
come separately as ``cache_read_input_tokens`` and ``cache_creation_input_tokens``. The
prompt's token count is ``count_message_tokens`` of ``flatten_messages(body)``: the
system prompt as a first message, every content block as a text part (tool inputs as their
JSON, tool results as their text). Tool definitions and images are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from devora_lab.llm.tokens import encoding_for
from devora_lab.llm.types import Message
from devora_lab.sim.cache import Prefix, prefix_chain
from devora_lab.sim.models import ModelSpec
from devora_lab.sim.responses import (
    Answer,
    ChatRequest,
    Envelope,
    Frame,
    GeneratedCall,
    PromptUsage,
    SimError,
    ToolChoice,
    ToolSpec,
    optional_int,
    request_key,
    sse,
    stop_sequences,
)

__all__ = ["chat_frames", "chat_json", "check_model", "count_input_tokens", "error_body",
           "flatten_messages", "parse_chat"]

_STOP: Final = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence",
                "tool_calls": "tool_use"}
_BLOCK_TYPES: Final = frozenset({"text", "image", "document", "tool_use", "tool_result",
                                 "thinking", "redacted_thinking", "search_result"})
_PER_MESSAGE: Final = 3
_PRIMING: Final = 3
_CHOICES: Final[dict[str, ToolChoice]] = {"auto": "auto", "any": "required", "tool": "required",
                                          "none": "none"}


def error_body(error: SimError, request_id: str) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    return orjson.dumps({"type": "error", "error": {"type": error.kind, "message": error.message},
                         "request_id": request_id})


def check_model(model: Any) -> str:
    """The requested model name; 400 when absent, 404 for ``missing-*`` names."""
    if not isinstance(model, str) or not model:
        raise SimError(400, "invalid_request_error", "model: Field required")
    if model.startswith("missing-"):
        raise SimError(404, "not_found_error", f"model: {model}")
    return model


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _block_text(block: Any) -> str:
    """The text a content block contributes to the prompt's token count."""
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return orjson.dumps(block.get("input", {})).decode()
    if kind == "tool_result":
        return "".join(_block_text(part) for part in _blocks(block.get("content")))
    if kind == "thinking":
        return str(block.get("thinking", ""))
    return ""


def _turns(body: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """(role, blocks) of the system prompt (if any) and every message, in prompt order."""
    turns: list[tuple[str, list[Any]]] = []
    if body.get("system"):
        turns.append(("system", _blocks(body["system"])))
    turns.extend((str(m.get("role")), _blocks(m.get("content"))) for m in body["messages"])
    return turns


def flatten_messages(body: Mapping[str, Any]) -> list[Message]:
    """The request as OpenAI-format messages whose ``count_message_tokens`` is its size."""
    return [{"role": role, "content": [{"type": "text", "text": _block_text(block)}  # type: ignore[typeddict-item]
                                       for block in blocks]}
            for role, blocks in _turns(body)]


def _segments(body: Mapping[str, Any], model: str) -> tuple[list[tuple[bytes, int]], list[int]]:
    """One (content, tokens) segment per block, and the indices of cache breakpoints."""
    encoding = encoding_for(model)
    segments: list[tuple[bytes, int]] = []
    breakpoints: list[int] = []
    for role, blocks in _turns(body):
        overhead = _PER_MESSAGE
        for block in blocks or [{"type": "text", "text": ""}]:
            text = _block_text(block)
            tokens = overhead + len(encoding.encode(text, disallowed_special=()))
            overhead = 0
            if isinstance(block, dict) and block.get("cache_control"):
                breakpoints.append(len(segments))
            segments.append((role.encode() + _canonical(block), tokens))
    return segments, breakpoints


def _canonical(block: Any) -> bytes:
    """A block's identity for the cache: its content, whatever its cache_control says."""
    if isinstance(block, dict) and "cache_control" in block:
        block = {key: value for key, value in block.items() if key != "cache_control"}
    return orjson.dumps(block, option=orjson.OPT_SORT_KEYS)


def _validate(body: Mapping[str, Any]) -> int:
    max_tokens = optional_int(body, "max_tokens")
    if max_tokens is None:
        raise SimError(400, "invalid_request_error", "max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError(400, "invalid_request_error", "messages: Field required")
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise SimError(400, "invalid_request_error", f"messages: Unexpected role {role!r}. "
                           "The Messages API accepts a top-level `system` parameter, not "
                           "\"system\" as an input message role.")
        for number, block in enumerate(_blocks(message.get("content"))):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCK_TYPES:
                raise SimError(400, "invalid_request_error", f"messages.{index}.content."
                               f"{number}.type: Input tag {kind!r} found using 'type' does not "
                               "match any of the expected tags")
    return max_tokens


def parse_chat(body: Mapping[str, Any], seed: int, spec: ModelSpec
               ) -> tuple[ChatRequest, list[Prefix], list[int]]:
    """The normalised request, its prompt prefixes and cache breakpoints; SimError if
    invalid."""
    max_tokens = _validate(body)
    segments, breakpoints = _segments(body, spec.name)
    prompt_tokens = _PRIMING + sum(tokens for _, tokens in segments)
    if prompt_tokens > spec.context_window:
        raise SimError(400, "invalid_request_error", f"prompt is too long: {prompt_tokens} "
                       f"tokens > {spec.context_window} maximum")
    tools = _tools(body.get("tools"))
    choice, forced = _tool_choice(body.get("tool_choice"), tools)
    request = ChatRequest(
        model=spec.name, prompt_tokens=prompt_tokens, key=request_key(seed, body),
        max_tokens=max_tokens, stop=stop_sequences(body.get("stop_sequences"), "stop_sequences"),
        tools=tools, tool_choice=choice, forced_tool=forced, preamble=True)
    namespace = spec.name.encode() + orjson.dumps(body.get("tools"), option=orjson.OPT_SORT_KEYS)
    return request, prefix_chain(namespace, segments), breakpoints


def _tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(tool, dict) and isinstance(tool.get("name"), str) for tool in value):
        raise SimError(400, "invalid_request_error", "tools: each tool needs a name")
    return tuple(ToolSpec(tool["name"], tool.get("input_schema") or {}) for tool in value)


def _tool_choice(value: Any, tools: Sequence[ToolSpec]) -> tuple[ToolChoice, str | None]:
    if value is None:
        return "auto", None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _CHOICES or not isinstance(value, dict):
        raise SimError(400, "invalid_request_error", "tool_choice: type must be auto, any, "
                       "tool or none")
    if kind != "tool":
        return _CHOICES[kind], None
    name = value.get("name")
    if not any(tool.name == name for tool in tools):
        raise SimError(400, "invalid_request_error", f"tool_choice: tool {name!r} not found in "
                       "tools")
    return "required", str(name)


def _usage(answer: Answer, prompt: PromptUsage, output_tokens: int) -> dict[str, Any]:
    return {"input_tokens": prompt.tokens - prompt.cache_read - prompt.cache_write,
            "cache_creation_input_tokens": prompt.cache_write,
            "cache_read_input_tokens": prompt.cache_read,
            "output_tokens": output_tokens, "service_tier": "standard"}


def _content(answer: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.text:
        blocks.append({"type": "text", "text": answer.text})
    blocks.extend({"type": "tool_use", "id": _tool_id(call), "name": call.name,
                   "input": call.input} for call in answer.tool_calls)
    return blocks


def _tool_id(call: GeneratedCall) -> str:
    return f"toolu_01{call.token[:22]}"


def chat_json(envelope: Envelope, answer: Answer, prompt: PromptUsage) -> bytes:
    """A ``message`` object."""
    return orjson.dumps({
        "id": envelope.id, "type": "message", "role": "assistant", "model": envelope.model,
        "content": _content(answer), "stop_reason": _STOP[answer.finish],
        "stop_sequence": answer.stop_sequence,
        "usage": _usage(answer, prompt, answer.output_tokens),
    })


def _event(kind: str, payload: Mapping[str, Any], content: bool = False) -> Frame:
    return Frame(sse(orjson.dumps({"type": kind, **payload}), kind), content)


def chat_frames(envelope: Envelope, answer: Answer, prompt: PromptUsage) -> list[Frame]:
    """The named events of one streamed message, from message_start to message_stop."""
    start: dict[str, Any] = {
        "id": envelope.id, "type": "message", "role": "assistant", "model": envelope.model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": _usage(answer, prompt, 1)}
    frames = [_event("message_start", {"message": start})]
    index = 0
    if answer.pieces:
        frames.append(_event("content_block_start",
                             {"index": 0, "content_block": {"type": "text", "text": ""}}))
        frames.append(_event("ping", {}))
        before = (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":')
        frames.extend(Frame(before + orjson.dumps(piece) + b"}}\n\n", True)
                      for piece in answer.pieces)
        frames.append(_event("content_block_stop", {"index": 0}))
        index = 1
    for call in answer.tool_calls:
        frames.append(_event("content_block_start", {"index": index, "content_block": {
            "type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}}}))
        if index == 0:
            frames.append(_event("ping", {}))
        frames.extend(_event("content_block_delta", {"index": index, "delta": {
            "type": "input_json_delta", "partial_json": part}}, content=True)
            for part in call.fragments)
        frames.append(_event("content_block_stop", {"index": index}))
        index += 1
    frames.append(_event("message_delta", {
        "delta": {"stop_reason": _STOP[answer.finish], "stop_sequence": answer.stop_sequence},
        "usage": {"output_tokens": answer.output_tokens}}))
    frames.append(_event("message_stop", {}))
    return frames


def count_input_tokens(body: Mapping[str, Any], spec: ModelSpec) -> bytes:
    """The answer of ``/v1/messages/count_tokens``: ``{"input_tokens": N}``."""
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise SimError(400, "invalid_request_error", "messages: Field required")
    segments, _ = _segments(body, spec.name)
    return orjson.dumps({"input_tokens": _PRIMING + sum(tokens for _, tokens in segments)})
