"""The OpenAI dialect: chat completions (JSON and SSE), embeddings, and error bodies.

Field names, nesting and the order of stream chunks follow what api.openai.com sends
(role chunk, one chunk per token, tool-call fragments, a finish chunk, an optional usage
chunk with empty ``choices``, then ``data: [DONE]``). ``n`` is ignored: one choice always.
Tool definitions are not counted in ``prompt_tokens`` (it equals ``count_message_tokens``
of the messages), so the simulator agrees with the client's own pre-flight estimate.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import orjson

from devora_lab.llm.tokens import count_message_tokens, count_tokens
from devora_lab.sim.cache import Prefix, prefix_chain
from devora_lab.sim.models import ModelSpec
from devora_lab.sim.responses import (
    Answer,
    ChatRequest,
    Envelope,
    Frame,
    PromptUsage,
    SimError,
    ToolChoice,
    ToolSpec,
    optional_int,
    request_key,
    sse,
    stop_sequences,
)

__all__ = ["chat_frames", "chat_json", "check_model", "embeddings", "error_body", "parse_chat"]

_FINISH: Final = {"stop": "stop", "stop_sequence": "stop", "length": "length",
                  "tool_calls": "tool_calls"}
_TYPES: Final = {"not_found_error": "invalid_request_error",
                 "authentication_error": "invalid_request_error", "api_error": "server_error",
                 "overloaded_error": "server_error", "rate_limit_error": "requests"}
_CHOICES: Final[dict[str, ToolChoice]] = {"auto": "auto", "none": "none", "required": "required"}
_FINGERPRINT: Final = "fp_5d6b7c8a9e"
_EMBEDDING_DIMS: Final = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                          "text-embedding-ada-002": 1536}
_EMBEDDING_CONTEXT: Final = 8192
_PRIMING: Final = 3


def error_body(error: SimError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return orjson.dumps({"error": {"message": error.message,
                                   "type": _TYPES.get(error.kind, error.kind),
                                   "param": error.param, "code": error.code}})


def check_model(model: Any) -> str:
    """The requested model name; 400 when absent, 404 for ``missing-*`` names."""
    if not isinstance(model, str) or not model:
        raise SimError(400, "invalid_request_error", "you must provide a model parameter",
                       param="model")
    if model.startswith("missing-"):
        raise SimError(404, "not_found_error", f"The model `{model}` does not exist or you do "
                       "not have access to it.", code="model_not_found", param="model")
    return model


def parse_chat(body: Mapping[str, Any], seed: int, spec: ModelSpec
               ) -> tuple[ChatRequest, list[Prefix]]:
    """The normalised request and its prompt prefixes (for the cache); SimError if invalid."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise SimError(400, "invalid_request_error", "'messages' must be a non-empty array of "
                       "message objects with a role", param="messages")
    segments = [(orjson.dumps(m, option=orjson.OPT_SORT_KEYS),
                 count_message_tokens([m], spec.name) - _PRIMING) for m in messages]
    prompt_tokens = _PRIMING + sum(tokens for _, tokens in segments)
    if prompt_tokens > spec.context_window:
        raise SimError(400, "invalid_request_error",
                       f"This model's maximum context length is {spec.context_window} tokens. "
                       f"However, your messages resulted in {prompt_tokens} tokens. Please "
                       "reduce the length of the messages.",
                       code="context_length_exceeded", param="messages")
    tools = _tools(body.get("tools"))
    choice, forced = _tool_choice(body.get("tool_choice"), tools)
    json_mode, schema = _response_format(body.get("response_format"))
    max_tokens = optional_int(body, "max_completion_tokens") or optional_int(body, "max_tokens")
    request = ChatRequest(
        model=spec.name, prompt_tokens=prompt_tokens, key=request_key(seed, body),
        max_tokens=max_tokens, stop=stop_sequences(body.get("stop"), "stop"), tools=tools,
        tool_choice=choice, forced_tool=forced, json_mode=json_mode, json_schema=schema)
    namespace = spec.name.encode() + orjson.dumps(body.get("tools"), option=orjson.OPT_SORT_KEYS)
    return request, prefix_chain(namespace, segments)


def _tools(value: Any) -> tuple[ToolSpec, ...]:
    if value is None:
        return ()
    specs: list[ToolSpec] = []
    for tool in value if isinstance(value, list) else [None]:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise SimError(400, "invalid_request_error", "each tool must be "
                           '{"type": "function", "function": {"name": ...}}', param="tools")
        specs.append(ToolSpec(function["name"], function.get("parameters") or {}))
    return tuple(specs)


def _tool_choice(value: Any, tools: Sequence[ToolSpec]) -> tuple[ToolChoice, str | None]:
    if value is None:
        return "auto", None
    if not tools:
        raise SimError(400, "invalid_request_error", "'tool_choice' is only allowed when "
                       "'tools' are specified", param="tool_choice")
    if isinstance(value, str) and value in _CHOICES:
        return _CHOICES[value], None
    name = (value.get("function") or {}).get("name") if isinstance(value, dict) else None
    if not any(tool.name == name for tool in tools):
        raise SimError(400, "invalid_request_error", f"Invalid value for 'tool_choice': "
                       f"{name!r} is not one of the tools", param="tool_choice")
    return "required", str(name)


def _response_format(value: Any) -> tuple[bool, Mapping[str, Any] | None]:
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
        return True, schema if isinstance(schema, dict) else {}
    raise SimError(400, "invalid_request_error", "response_format must be text, json_object "
                   "or json_schema", param="response_format")


def _usage(answer: Answer, prompt: PromptUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt.tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": prompt.tokens + answer.output_tokens,
        "prompt_tokens_details": {"cached_tokens": prompt.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens,
                                      "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }


def _tool_calls(answer: Answer) -> list[dict[str, Any]]:
    return [{"id": f"call_{call.token}", "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}
            for call in answer.tool_calls]


def chat_json(envelope: Envelope, answer: Answer, prompt: PromptUsage) -> bytes:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None,
                               "refusal": None, "annotations": []}
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls(answer)
    return orjson.dumps({
        "id": envelope.id, "object": "chat.completion", "created": envelope.created,
        "model": envelope.model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _FINISH[answer.finish]}],
        "usage": _usage(answer, prompt), "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    })


def chat_frames(envelope: Envelope, answer: Answer, prompt: PromptUsage,
                include_usage: bool) -> list[Frame]:
    """The ``chat.completion.chunk`` events of one streamed answer, ``[DONE]`` included."""
    head = orjson.dumps({"id": envelope.id, "object": "chat.completion.chunk",
                         "created": envelope.created, "model": envelope.model,
                         "service_tier": "default", "system_fingerprint": _FINGERPRINT})
    prefix = head[:-1] + b',"choices":[{"index":0,"delta":'
    tail = b',"usage":null}' if include_usage else b"}"

    def chunk(delta: Mapping[str, Any], finish: str | None = None, content: bool = False
              ) -> Frame:
        body = (prefix + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":'
                + orjson.dumps(finish) + b"}]" + tail)
        return Frame(sse(body), content)

    frames = [chunk({"role": "assistant", "content": "" if answer.pieces else None,
                     "refusal": None})]
    # Content chunks are most of a stream: splice each piece into a prebuilt chunk.
    before = b"data: " + prefix + b'{"content":'
    after = b'},"logprobs":null,"finish_reason":null}]' + tail + b"\n\n"
    frames.extend(Frame(before + orjson.dumps(piece) + after, True) for piece in answer.pieces)
    for index, call in enumerate(answer.tool_calls):
        frames.append(chunk({"tool_calls": [{
            "index": index, "id": f"call_{call.token}", "type": "function",
            "function": {"name": call.name, "arguments": ""}}]}, content=True))
        frames.extend(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]},
                            content=True) for part in call.fragments)
    frames.append(chunk({}, _FINISH[answer.finish]))
    if include_usage:
        usage = head[:-1] + b',"choices":[],"usage":' + orjson.dumps(_usage(answer, prompt)) + b"}"
        frames.append(Frame(sse(usage)))
    frames.append(Frame(sse(b"[DONE]")))
    return frames


def embeddings(body: Mapping[str, Any], seed: int) -> tuple[bytes, int]:
    """An embeddings ``list`` answer and its prompt tokens.

    Vectors are unit vectors drawn from a hash of (seed, model, input), so equal texts get
    equal vectors; ``dimensions`` keeps a prefix and renormalises it, as the v3 models do.
    """
    model = check_model(body.get("model"))
    inputs = _embedding_inputs(body.get("input"))
    native = _EMBEDDING_DIMS.get(model, 1536)
    dims = optional_int(body, "dimensions") or native
    if dims > native:
        raise SimError(400, "invalid_request_error", f"dimensions must be at most {native} "
                       f"for {model}", param="dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = []
    tokens = 0
    for index, item in enumerate(inputs):
        count = len(item) if isinstance(item, list) else count_tokens(item, model)
        if count > _EMBEDDING_CONTEXT:
            raise SimError(400, "invalid_request_error", f"This model's maximum context length "
                           f"is {_EMBEDDING_CONTEXT} tokens, however you requested {count} "
                           "tokens. Please reduce your prompt.", param="input")
        tokens += count
        vector = _unit_vector(seed, model, orjson.dumps(item), native, dims)
        encoded: Any = base64.b64encode(vector.tobytes()).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    answer = {"object": "list", "data": data, "model": model,
              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), tokens


def _embedding_inputs(value: Any) -> list[Any]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, int) for item in value):
            return [value]
        if all((isinstance(item, str) and item) or (isinstance(item, list) and item)
               for item in value):
            return list(value)
    raise SimError(400, "invalid_request_error", "'input' must be a non-empty string, array "
                   "of strings, or array of token arrays", param="input")


def _unit_vector(seed: int, model: str, content: bytes, native: int, dims: int
                 ) -> np.ndarray[Any, np.dtype[np.float32]]:
    digest = hashlib.blake2b(model.encode() + b"\0" + content, digest_size=8,
                             key=str(seed).encode()).digest()
    vector = np.random.default_rng(int.from_bytes(digest, "big")).standard_normal(native)[:dims]
    return (vector / np.linalg.norm(vector)).astype(np.float32)
