"""The official SDKs and our own adapters, unchanged, against the simulator."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import numpy as np
import openai
import orjson
import pytest
from anthropic import Anthropic
from openai import OpenAI

from devora_lab.errors import (
    ContextWindowError,
    MalformedResponseError,
    ProviderOverloadedError,
    RateLimitError,
)
from devora_lab.llm.providers.anthropic import AnthropicAdapter
from devora_lab.llm.providers.base import ParsedCompletion, ProviderAdapter
from devora_lab.llm.providers.openai import OpenAIAdapter
from devora_lab.llm.sse import SSEDecoder
from devora_lab.llm.tokens import count_tokens
from devora_lab.llm.types import Chunk, Message
from devora_lab.sim.server import SimServer
from devora_lab.sim.textgen import generate_pieces

TOOL_SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city", "days"]}
OPENAI_TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather forecast", "parameters": TOOL_SCHEMA}}]
CLAUDE = "claude-3-5-sonnet-20241022"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=3, latency_scale=0) as server:
        yield server


@pytest.fixture(scope="module")
def oai(sim: SimServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=sim.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude(sim: SimServer) -> Iterator[Anthropic]:
    with Anthropic(base_url=sim.anthropic_base_url, api_key="sk-ant-test",
                   max_retries=0) as client:
        yield client


def fault(kind: str) -> dict[str, str]:
    return {"x-sim-fault": kind}


# -- official openai SDK ---------------------------------------------------------------


def test_openai_sdk_chat_json_and_stream_agree(oai: OpenAI) -> None:
    messages: Any = [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Explain prompt caching."}]
    completion = oai.chat.completions.create(model="gpt-4o", messages=messages, seed=1)
    text = completion.choices[0].message.content or ""
    assert completion.model == "gpt-4o-2024-08-06" and text
    assert completion.usage is not None
    assert completion.usage.completion_tokens == count_tokens(text, "gpt-4o")
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    stream = oai.chat.completions.create(model="gpt-4o", messages=messages, seed=1, stream=True,
                                         stream_options={"include_usage": True})
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(parts) == text
    assert usage is not None and usage.total_tokens == completion.usage.total_tokens


def test_openai_sdk_max_tokens_and_json_mode(oai: OpenAI) -> None:
    capped = oai.chat.completions.create(model="gpt-4o-mini", max_completion_tokens=4,
                                         messages=[{"role": "user", "content": "long"}])
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 4
    structured = oai.chat.completions.create(
        model="gpt-4o-mini", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "answer in JSON"}])
    assert isinstance(orjson.loads(structured.choices[0].message.content or ""), dict)


def test_openai_sdk_tools_json_and_stream(oai: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    completion = oai.chat.completions.create(model="gpt-4o", messages=messages,
                                             tools=OPENAI_TOOLS, tool_choice="required")
    assert completion.choices[0].finish_reason == "tool_calls"
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    arguments = orjson.loads(calls[0].function.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    with oai.chat.completions.stream(model="gpt-4o", messages=messages, tools=OPENAI_TOOLS,
                                     tool_choice="required") as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    assert streamed is not None
    assert streamed[0].function.arguments == calls[0].function.arguments
    assert streamed[0].id == calls[0].id


def test_openai_sdk_embeddings(oai: OpenAI) -> None:
    default = oai.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    floats = oai.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"],
                                   encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 1536
    assert np.allclose(default.data[0].embedding, floats.data[0].embedding, atol=1e-6)
    assert abs(np.linalg.norm(default.data[1].embedding) - 1) < 1e-5
    assert default.usage.prompt_tokens == 2 * count_tokens("a cat", "text-embedding-3-small")
    small = oai.embeddings.create(model="text-embedding-3-large", input="x", dimensions=64)
    assert len(small.data[0].embedding) == 64


def test_openai_sdk_raises_its_own_errors(oai: OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="gpt-4o", messages=messages, extra_headers=fault("429"))
    assert "retry-after" in limited.value.response.headers
    assert limited.value.request_id is not None and limited.value.request_id.startswith("req_")
    with pytest.raises(openai.InternalServerError) as overloaded:
        oai.chat.completions.create(model="gpt-4o", messages=messages, extra_headers=fault("529"))
    assert overloaded.value.status_code == 503
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="missing-gpt", messages=messages)
    prompt = "".join(generate_pieces(random.Random(1), 5000))
    with pytest.raises(openai.BadRequestError) as too_long:
        oai.chat.completions.create(model="sim-small-4k",
                                    messages=[{"role": "user", "content": prompt}])
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o", messages=messages,
                                    extra_headers=fault("reset"))
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.2).chat.completions.create(
            model="gpt-4o", messages=messages, extra_headers=fault("timeout"))


def test_openai_sdk_sees_a_cut_stream_as_an_error(oai: OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "cut"}], stream=True,
        max_tokens=50, extra_headers=fault("cut"))
    received = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received


# -- official anthropic SDK ------------------------------------------------------------


def test_anthropic_sdk_create_and_stream_agree(claude: Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "Explain prompt caching."}]
    message = claude.messages.create(model=CLAUDE, max_tokens=300, system="Be brief.",
                                     messages=messages)
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason in ("end_turn", "max_tokens")
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert message.usage.output_tokens == count_tokens(block.text, CLAUDE)
    with claude.messages.stream(model=CLAUDE, max_tokens=300, system="Be brief.",
                                messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == block.text
    assert final.usage.output_tokens == message.usage.output_tokens
    assert final.usage.input_tokens == message.usage.input_tokens
    assert final.stop_reason == message.stop_reason


def test_anthropic_sdk_tool_use(claude: Anthropic) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": TOOL_SCHEMA}]
    messages: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    message = claude.messages.create(model=CLAUDE, max_tokens=300, messages=messages,
                                     tools=tools, tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    use = message.content[-1]
    assert isinstance(use, anthropic.types.ToolUseBlock) and use.name == "get_weather"
    assert isinstance(use.input, dict) and {"city", "days"} <= set(use.input)
    with claude.messages.stream(model=CLAUDE, max_tokens=300, messages=messages, tools=tools,
                                tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    streamed = final.content[-1]
    assert isinstance(streamed, anthropic.types.ToolUseBlock)
    assert streamed.input == use.input and streamed.id == use.id


def test_anthropic_sdk_prompt_cache_usage(claude: Anthropic) -> None:
    system: Any = [{"type": "text", "text": "".join(generate_pieces(random.Random(9), 1500)),
                    "cache_control": {"type": "ephemeral"}}]
    messages: Any = [{"role": "user", "content": "q"}]
    first = claude.messages.create(model=CLAUDE, max_tokens=20, system=system, messages=messages)
    second = claude.messages.create(model=CLAUDE, max_tokens=20, system=system,
                                    messages=messages)
    assert first.usage.cache_creation_input_tokens and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens
    counted = claude.messages.count_tokens(model=CLAUDE, system=system, messages=messages)
    assert counted.input_tokens == (second.usage.input_tokens
                                    + (second.usage.cache_read_input_tokens or 0))


def test_anthropic_sdk_raises_its_own_errors(claude: Anthropic) -> None:
    messages: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=messages,
                               extra_headers=fault("529"))
    assert overloaded.value.status_code == 529
    assert overloaded.value.request_id is not None
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=messages,
                               extra_headers=fault("429"))
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="missing-claude", max_tokens=10, messages=messages)
    prompt = "".join(generate_pieces(random.Random(2), 5000))
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
        claude.messages.create(model="sim-small-4k", max_tokens=10,
                               messages=[{"role": "user", "content": prompt}])
    with pytest.raises(anthropic.APIConnectionError):
        claude.messages.create(model=CLAUDE, max_tokens=10, messages=messages,
                               extra_headers=fault("reset"))


# -- our adapters ----------------------------------------------------------------------


def _send(adapter: ProviderAdapter, messages: list[Message], model: str,
          params: dict[str, Any], *, stream: bool) -> bytes:
    spec = adapter.chat_request(messages, model, params, stream=stream)
    response = httpx.post(spec.url, headers=spec.headers, json=spec.body, timeout=10)
    assert response.status_code == 200, response.text
    return response.content


def _parse_stream(adapter: ProviderAdapter, raw: bytes, model: str
                  ) -> tuple[ParsedCompletion, list[Chunk]]:
    """Feed the SSE bytes in awkward pieces (split mid-line, mid-character) to our parser."""
    decoder, state, chunks = SSEDecoder(), adapter.new_stream(model), []
    rng = random.Random(0)
    position = 0
    while position < len(raw):
        step = rng.randint(1, 97)
        for event in decoder.feed(raw[position:position + step]):
            chunks.extend(state.feed(event))
        position += step
    for event in decoder.close():
        chunks.extend(state.feed(event))
    assert state.done
    return state.result(), chunks


@pytest.mark.parametrize("tools", [False, True])
def test_openai_adapter_parses_json_and_sse(sim: SimServer, tools: bool) -> None:
    adapter = OpenAIAdapter("sim-openai", sim.openai_base_url, "sk-test")
    messages: list[Message] = [{"role": "user", "content": "Tell me about caches."}]
    params: dict[str, Any] = {"tools": OPENAI_TOOLS, "tool_choice": "required"} if tools else {}
    raw = _send(adapter, messages, "gpt-4o", params, stream=False)
    parsed = adapter.parse_chat(raw, "gpt-4o")
    payload = orjson.loads(raw)
    assert parsed.text == (payload["choices"][0]["message"]["content"] or "")
    assert parsed.usage.input_tokens == payload["usage"]["prompt_tokens"]
    assert parsed.usage.output_tokens == payload["usage"]["completion_tokens"]
    assert parsed.model == payload["model"] and parsed.response_id == payload["id"]
    assert parsed.finish_reason == ("tool_calls" if tools else payload["choices"][0][
        "finish_reason"])
    streamed, chunks = _parse_stream(adapter, _send(adapter, messages, "gpt-4o", params,
                                                    stream=True), "gpt-4o")
    assert streamed.text == parsed.text and streamed.usage == parsed.usage
    assert streamed.finish_reason == parsed.finish_reason
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [
        (c.name, c.arguments) for c in parsed.tool_calls]
    assert "".join(c.text for c in chunks) == parsed.text
    if tools:
        assert parsed.tool_calls[0].parsed_arguments()["city"]


@pytest.mark.parametrize("tools", [False, True])
def test_anthropic_adapter_parses_json_and_sse(sim: SimServer, tools: bool) -> None:
    adapter = AnthropicAdapter("sim-anthropic", sim.anthropic_base_url, "sk-ant-test")
    messages: list[Message] = [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Tell me about caches."}]
    params: dict[str, Any] = {"max_tokens": 400}
    if tools:
        params |= {"tools": OPENAI_TOOLS, "tool_choice": "required"}
    raw = _send(adapter, messages, CLAUDE, params, stream=False)
    parsed = adapter.parse_chat(raw, CLAUDE)
    payload = orjson.loads(raw)
    texts = [b["text"] for b in payload["content"] if b["type"] == "text"]
    assert parsed.text == "".join(texts)
    assert parsed.usage.input_tokens == payload["usage"]["input_tokens"]
    assert parsed.usage.output_tokens == payload["usage"]["output_tokens"]
    streamed, chunks = _parse_stream(adapter, _send(adapter, messages, CLAUDE, params,
                                                    stream=True), CLAUDE)
    assert streamed.text == parsed.text and streamed.usage == parsed.usage
    assert streamed.finish_reason == parsed.finish_reason
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in streamed.tool_calls] == [
        (c.id, c.name, orjson.loads(c.arguments)) for c in parsed.tool_calls]
    assert chunks[-1].usage == parsed.usage
    if tools:
        assert parsed.finish_reason == "tool_calls"


def test_anthropic_adapter_normalises_cache_usage(sim: SimServer) -> None:
    adapter = AnthropicAdapter("sim-anthropic", sim.anthropic_base_url, "sk-ant-test")
    body = {"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "q"}],
            "system": [{"type": "text", "text": "".join(generate_pieces(random.Random(4), 1400)),
                        "cache_control": {"type": "ephemeral"}}]}
    headers = {"anthropic-version": "2023-06-01"}
    first = httpx.post(sim.base_url + "/v1/messages", json=body, headers=headers).content
    second = httpx.post(sim.base_url + "/v1/messages", json=body, headers=headers).content
    written, read = adapter.parse_chat(first, CLAUDE).usage, adapter.parse_chat(second,
                                                                                CLAUDE).usage
    assert written.cache_creation_input_tokens > 0 and written.cached_input_tokens == 0
    assert read.cached_input_tokens == written.cache_creation_input_tokens
    assert read.input_tokens == written.input_tokens  # normalised: every input token counted
    assert read.uncached_input_tokens == written.uncached_input_tokens


def test_openai_adapter_reports_cached_tokens(sim: SimServer) -> None:
    adapter = OpenAIAdapter("sim-openai", sim.openai_base_url, "sk-test")
    messages: list[Message] = [
        {"role": "system", "content": "".join(generate_pieces(random.Random(6), 1300))},
        {"role": "user", "content": "q"}]
    _send(adapter, messages, "gpt-4o", {}, stream=False)
    usage = adapter.parse_chat(_send(adapter, messages, "gpt-4o", {}, stream=False),
                               "gpt-4o").usage
    assert 1024 <= usage.cached_input_tokens < usage.input_tokens


def test_adapters_classify_simulated_errors(sim: SimServer) -> None:
    openai_adapter = OpenAIAdapter("sim-openai", sim.openai_base_url, "sk-test")
    spec = openai_adapter.chat_request([{"role": "user", "content": "x"}], "gpt-4o", {},
                                       stream=False)
    limited = httpx.post(spec.url, headers={**spec.headers, **fault("429")}, json=spec.body)
    error = openai_adapter.error(limited.status_code, limited.content, limited.headers, "gpt-4o")
    assert isinstance(error, RateLimitError) and error.retry_after is not None
    gateway = httpx.post(spec.url, headers={**spec.headers, **fault("502")}, json=spec.body)
    assert isinstance(openai_adapter.error(502, gateway.content, gateway.headers, "gpt-4o"),
                      ProviderOverloadedError)
    prompt = "".join(generate_pieces(random.Random(1), 5000))
    small = openai_adapter.chat_request([{"role": "user", "content": prompt}], "sim-small-4k",
                                        {}, stream=False)
    too_long = httpx.post(small.url, headers=small.headers, json=small.body)
    assert isinstance(openai_adapter.error(400, too_long.content, too_long.headers, "s"),
                      ContextWindowError)
    claude_adapter = AnthropicAdapter("sim-anthropic", sim.anthropic_base_url, "k")
    spec = claude_adapter.chat_request([{"role": "user", "content": "x"}], CLAUDE, {},
                                       stream=False)
    overloaded = httpx.post(spec.url, headers={**spec.headers, **fault("529")}, json=spec.body)
    assert isinstance(claude_adapter.error(529, overloaded.content, overloaded.headers, CLAUDE),
                      ProviderOverloadedError)
    with pytest.raises(MalformedResponseError):
        claude_adapter.parse_chat(httpx.post(spec.url, headers={**spec.headers,
                                                                **fault("malformed")},
                                             json=spec.body).content, CLAUDE)
    stream_spec = claude_adapter.chat_request([{"role": "user", "content": "x"}], CLAUDE, {},
                                              stream=True)
    broken = httpx.post(stream_spec.url, headers={**stream_spec.headers, **fault("malformed")},
                        json=stream_spec.body).content
    with pytest.raises(MalformedResponseError):
        _parse_stream(claude_adapter, broken, CLAUDE)
