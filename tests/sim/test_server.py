"""The simulator over real HTTP: wire formats, determinism, caching, limits, faults, stats."""

from __future__ import annotations

import argparse
import base64
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from devora_lab.errors import ConfigError, ContextWindowError
from devora_lab.llm.policy import error_for_status, parse_retry_after
from devora_lab.llm.tokens import count_message_tokens, count_tokens, encoding_for
from devora_lab.llm.types import Message
from devora_lab.sim.anthropic_api import flatten_messages
from devora_lab.sim.faults import FaultConfig, FaultKind, FaultPlan
from devora_lab.sim.models import LatencyModel, model_spec
from devora_lab.sim.server import SimServer
from devora_lab.sim.textgen import VOCABULARY, fill_schema, generate_pieces

ANTHROPIC = {"anthropic-version": "2023-06-01"}
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    "hourly": {"type": "boolean"}}, "required": ["city", "days", "unit"]}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
                {"type": "function", "function": {"name": "search", "parameters": {
                    "type": "object", "properties": {"query": {"type": "string"}},
                    "required": ["query"]}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": WEATHER}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=7, latency_scale=0) as server:
        yield server


@pytest.fixture
def http(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


def user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def chat(http: httpx.Client, text: str = "hello", **body: Any) -> dict[str, Any]:
    payload = {"model": "gpt-4o-mini", "messages": user(text), **body}
    response = http.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def message(http: httpx.Client, text: str = "hello", **body: Any) -> httpx.Response:
    payload = {"model": "claude-3-5-sonnet-20241022", "max_tokens": 1024,
               "messages": user(text), **body}
    return http.post("/v1/messages", json=payload, headers=ANTHROPIC)


def sse_data(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each event; asserts the framing (blank-line separated)."""
    assert raw.endswith("\n\n")
    events = []
    for block in raw.removesuffix("\n\n").split("\n\n"):
        lines = block.split("\n")
        name = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
        data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        assert len(data) == 1 and len(lines) == (2 if name else 1), block
        events.append((name, data[0]))
    return events


def long_text(tokens: int, seed: int = 0) -> str:
    return "".join(generate_pieces(random.Random(seed), tokens))


# -- generated text --------------------------------------------------------------------


def test_vocabulary_words_are_single_tokens_in_both_encodings() -> None:
    for encoding in (encoding_for("gpt-4o"), encoding_for("gpt-4")):
        for word in VOCABULARY:
            for form in (word, " " + word, word.capitalize(), " " + word.capitalize()):
                assert len(encoding.encode(form)) == 1, form


def test_generated_text_has_exactly_the_requested_tokens() -> None:
    rng = random.Random(3)
    for _ in range(300):
        n = rng.randint(0, 600)
        text = "".join(generate_pieces(rng, n))
        assert count_tokens(text, "gpt-4o") == n
        assert count_tokens(text, "claude-3-haiku-20240307") == n


def test_fill_schema_honours_types_enums_and_required() -> None:
    value = fill_schema(WEATHER, random.Random(1))
    assert set(value) == {"city", "days", "unit"}
    assert isinstance(value["city"], str) and 1 <= value["days"] <= 7
    assert value["unit"] in ("celsius", "fahrenheit")


# -- OpenAI chat completions -----------------------------------------------------------


def test_openai_json_answer_has_every_field(http: httpx.Client) -> None:
    messages: list[Message] = [{"role": "system", "content": "You are terse."},
                               *user("Name three caches.")]
    body = chat(http, messages=messages)
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert abs(body["created"] - time.time()) < 60
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] == count_message_tokens(messages, "gpt-4o-mini")
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"], "gpt-4o")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


def test_completion_tokens_match_tiktoken_for_many_answers(http: httpx.Client) -> None:
    lengths = []
    for i in range(40):
        model = ("gpt-4o", "gpt-4o-mini", "some-local-model")[i % 3]
        body = chat(http, f"question {i}", model=model)
        content = body["choices"][0]["message"]["content"]
        reported = body["usage"]["completion_tokens"]
        assert abs(count_tokens(content, model) - reported) <= 0.02 * reported
        lengths.append(reported)
    assert len(set(lengths)) > 10  # lengths vary, drawn from the trace


def test_max_tokens_truncates_with_finish_reason_length(http: httpx.Client) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        body = chat(http, "write a long essay", **{name: 3})
        assert body["usage"]["completion_tokens"] == 3
        assert body["choices"][0]["finish_reason"] == "length"


def test_stop_sequence_ends_the_answer_before_it(http: httpx.Client) -> None:
    full = chat(http, "stop test", max_tokens=60)["choices"][0]["message"]["content"]
    stop = full.split()[len(full.split()) // 2]
    body = chat(http, "stop test", max_tokens=60, stop=[stop])
    content = body["choices"][0]["message"]["content"]
    assert full.startswith(content) and stop not in content
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == count_tokens(content, "gpt-4o-mini")


def test_json_mode_and_json_schema_answers_are_valid_json(http: httpx.Client) -> None:
    for i in range(10):
        body = chat(http, f"json {i}", response_format={"type": "json_object"})
        content = body["choices"][0]["message"]["content"]
        assert isinstance(orjson.loads(content), dict)
        assert body["usage"]["completion_tokens"] == count_tokens(content, "gpt-4o-mini")
    schema = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER}}
    value = orjson.loads(chat(http, "schema", response_format=schema)
                         ["choices"][0]["message"]["content"])
    assert {"city", "days", "unit"} <= set(value)


def test_required_and_named_tool_choice_return_fitting_calls(http: httpx.Client) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice in ("required", named):
        body = chat(http, "weather in Paris?", tools=OPENAI_TOOLS, tool_choice=choice)
        assert body["choices"][0]["finish_reason"] == "tool_calls"
        message_ = body["choices"][0]["message"]
        call = message_["tool_calls"][0]
        assert message_["content"] is None
        assert call["id"].startswith("call_") and call["type"] == "function"
        arguments = orjson.loads(call["function"]["arguments"])
        if choice == named or call["function"]["name"] == "get_weather":
            assert {"city", "days", "unit"} <= set(arguments)
        else:
            assert isinstance(arguments["query"], str)


def test_auto_tool_choice_calls_a_tool_on_about_thirty_percent(http: httpx.Client) -> None:
    calls = sum(bool(chat(http, f"maybe a tool {i}", tools=OPENAI_TOOLS)["choices"][0]
                     ["message"].get("tool_calls")) for i in range(200))
    assert 0.2 * 200 <= calls <= 0.4 * 200
    none = [chat(http, f"no tool {i}", tools=OPENAI_TOOLS, tool_choice="none") for i in range(20)]
    assert not any(b["choices"][0]["message"].get("tool_calls") for b in none)


def test_bad_tool_choice_is_a_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={
        "model": "gpt-4o", "messages": user("x"), "tools": OPENAI_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_same_seed_and_request_give_the_same_answer(sim: SimServer, http: httpx.Client) -> None:
    first = chat(http, "determinism", seed=42)
    assert chat(http, "determinism", seed=42)["choices"] == first["choices"]
    assert chat(http, "determinism", seed=43)["choices"] != first["choices"]
    with SimServer(seed=7, latency_scale=0) as twin, httpx.Client(base_url=twin.base_url) as c:
        assert chat(c, "determinism", seed=42)["choices"] == first["choices"]
    with SimServer(seed=8, latency_scale=0) as other, httpx.Client(base_url=other.base_url) as c:
        assert chat(c, "determinism", seed=42)["choices"] != first["choices"]


def test_reasoning_models_bill_hidden_reasoning_tokens(http: httpx.Client) -> None:
    body = chat(http, "think", model="o3-mini")
    usage = body["usage"]
    visible = count_tokens(body["choices"][0]["message"]["content"], "o3-mini")
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert usage["completion_tokens"] == visible + usage["completion_tokens_details"][
        "reasoning_tokens"]


def test_unknown_models_are_served_and_missing_ones_are_404(http: httpx.Client) -> None:
    assert chat(http, model="my-finetune")["model"] == "my-finetune"
    response = http.post("/v1/chat/completions",
                         json={"model": "missing-model", "messages": user("x")})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    response = message(http, model="missing-claude")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_context_window_errors_look_like_the_providers(http: httpx.Client) -> None:
    prompt = long_text(5000)
    response = http.post("/v1/chat/completions",
                         json={"model": "sim-small-4k", "messages": user(prompt)})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length" in error["message"]
    assert isinstance(error_for_status(400, error["message"], {}, provider="sim",
                                       model="sim-small-4k"), ContextWindowError)
    response = message(http, prompt, model="sim-small-4k")
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "prompt is too long" in response.json()["error"]["message"]
    assert chat(http, long_text(3000), model="sim-small-4k", max_tokens=5)["usage"][
        "prompt_tokens"] > 3000


def test_model_table_windows() -> None:
    assert model_spec("gpt-4o").context_window == 128_000
    assert model_spec("claude-3-opus-20240229").context_window == 200_000
    assert model_spec("sim-small-4k").context_window == 4096
    assert model_spec("anything").context_window == 128_000


# -- OpenAI streaming ------------------------------------------------------------------


def test_openai_stream_framing_and_usage_chunk(http: httpx.Client) -> None:
    payload = {"model": "gpt-4o", "messages": user("stream me"), "stream": True,
               "stream_options": {"include_usage": True}}
    response = http.post("/v1/chat/completions", json=payload)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_data(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"]
               for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    usage_chunk, finish_chunk = chunks[-1], chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 0
    assert finish_chunk["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[1:-2])
    assert usage_chunk["usage"]["completion_tokens"] == len(chunks) - 3  # one token per chunk
    unstreamed = chat(http, "stream me", model="gpt-4o")
    assert text == unstreamed["choices"][0]["message"]["content"]
    assert usage_chunk["usage"]["completion_tokens"] == unstreamed["usage"]["completion_tokens"]


def test_openai_stream_without_include_usage_has_no_usage(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={
        "model": "gpt-4o", "messages": user("x"), "stream": True})
    chunks = [orjson.loads(d) for _, d in sse_data(response.text)[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_openai_stream_tool_call_deltas(http: httpx.Client) -> None:
    payload = {"model": "gpt-4o", "messages": user("weather?"), "stream": True,
               "tools": OPENAI_TOOLS, "tool_choice": "required"}
    chunks = [orjson.loads(d) for _, d in
              sse_data(http.post("/v1/chat/completions", json=payload).text)[:-1]]
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
              if c["choices"][0]["delta"].get("tool_calls")]
    assert deltas[0]["index"] == 0 and deltas[0]["id"].startswith("call_")
    assert deltas[0]["function"]["name"] in ("get_weather", "search")
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert len(deltas) > 2 and isinstance(orjson.loads(arguments), dict)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    unstreamed = chat(http, "weather?", model="gpt-4o", tools=OPENAI_TOOLS,
                      tool_choice="required")
    assert unstreamed["choices"][0]["message"]["tool_calls"][0]["function"][
        "arguments"] == arguments


# -- Anthropic messages ----------------------------------------------------------------


def test_anthropic_json_answer_has_every_field(http: httpx.Client) -> None:
    body: dict[str, Any] = {
            "model": "claude-3-5-sonnet-20241022", "max_tokens": 1024, "system": "Be brief.",
            "messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
                         {"role": "user", "content": "tell me more"}]}
    response = http.post("/v1/messages", json=body, headers=ANTHROPIC)
    assert response.status_code == 200 and response.headers["request-id"].startswith("req_")
    answer = response.json()
    assert answer["id"].startswith("msg_") and answer["type"] == "message"
    assert answer["role"] == "assistant" and answer["model"] == body["model"]
    assert answer["content"][0]["type"] == "text" and answer["content"][0]["text"]
    assert answer["stop_reason"] in ("end_turn", "max_tokens")
    usage = answer["usage"]
    assert usage["input_tokens"] == count_message_tokens(flatten_messages(body), body["model"])
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0
    assert usage["output_tokens"] == count_tokens(answer["content"][0]["text"], body["model"])


def test_anthropic_requires_max_tokens_and_version(http: httpx.Client) -> None:
    response = http.post("/v1/messages", headers=ANTHROPIC, json={
        "model": "claude-3-haiku-20240307", "messages": user("x")})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error",
                                        "message": "max_tokens: Field required"}
    response = http.post("/v1/messages", json={
        "model": "claude-3-haiku-20240307", "max_tokens": 5, "messages": user("x")})
    assert response.status_code == 400 and "anthropic-version" in response.json()["error"][
        "message"]
    response = message(http, messages=[{"role": "system", "content": "x"}])
    assert response.status_code == 400
    openai_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    response = message(http, messages=[{"role": "user", "content": [openai_part]}])
    assert response.status_code == 400 and "image_url" in response.json()["error"]["message"]


def test_anthropic_stream_events_in_order(http: httpx.Client) -> None:
    response = message(http, "stream please", stream=True)
    events = sse_data(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    payloads = [orjson.loads(data) for _, data in events]
    assert all(p["type"] == name for p, name in zip(payloads, names, strict=True))
    start = payloads[0]["message"]
    assert start["usage"]["input_tokens"] == count_message_tokens(user("stream please"),
                                                                  "claude")
    text = "".join(p["delta"]["text"] for p in payloads[3:-3])
    final = message(http, "stream please").json()
    assert text == final["content"][0]["text"]
    assert payloads[-2]["usage"]["output_tokens"] == final["usage"]["output_tokens"]
    assert payloads[-2]["delta"]["stop_reason"] == final["stop_reason"]


def test_anthropic_tool_use_json_and_stream(http: httpx.Client) -> None:
    choice = {"type": "tool", "name": "get_weather"}
    answer = message(http, "weather", tools=ANTHROPIC_TOOLS, tool_choice=choice).json()
    assert answer["stop_reason"] == "tool_use"
    block = answer["content"][-1]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert {"city", "days", "unit"} <= set(block["input"])
    events = sse_data(message(http, "weather", tools=ANTHROPIC_TOOLS, tool_choice=choice,
                              stream=True).text)
    payloads = [orjson.loads(data) for _, data in events]
    start = next(p for p in payloads if p["type"] == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
    partial = "".join(p["delta"]["partial_json"] for p in payloads
                      if p["type"] == "content_block_delta")
    assert orjson.loads(partial) == block["input"]


def test_anthropic_auto_tools_sometimes_speak_first(http: httpx.Client) -> None:
    answers = [message(http, f"auto {i}", tools=ANTHROPIC_TOOLS).json() for i in range(60)]
    with_tool = [a for a in answers if a["stop_reason"] == "tool_use"]
    assert 6 <= len(with_tool) <= 30
    assert all([b["type"] for b in a["content"]] == ["text", "tool_use"] for a in with_tool)


def test_anthropic_stop_sequence(http: httpx.Client) -> None:
    full = message(http, "stop seq", max_tokens=60).json()["content"][0]["text"]
    stop = full.split()[len(full.split()) // 2]
    answer = message(http, "stop seq", max_tokens=60, stop_sequences=[stop]).json()
    assert answer["stop_reason"] == "stop_sequence" and answer["stop_sequence"] == stop
    assert stop not in answer["content"][0]["text"]


def test_anthropic_count_tokens_endpoint(http: httpx.Client) -> None:
    body = {"model": "claude-3-haiku-20240307", "system": "S", "messages": user("count me")}
    response = http.post("/v1/messages/count_tokens", json=body, headers=ANTHROPIC)
    assert response.json() == {"input_tokens": count_message_tokens(flatten_messages(body),
                                                                    "claude")}


# -- embeddings ------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors(http: httpx.Client) -> None:
    small = http.post("/v1/embeddings", json={"model": "text-embedding-3-small",
                                              "input": ["alpha", "beta", "alpha"]}).json()
    vectors = [np.asarray(d["embedding"]) for d in small["data"]]
    assert [d["index"] for d in small["data"]] == [0, 1, 2]
    assert all(len(v) == 1536 and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    assert small["usage"]["prompt_tokens"] == 3 * count_tokens("alpha", "text-embedding-3-small")
    large = http.post("/v1/embeddings", json={"model": "text-embedding-3-large",
                                              "input": "alpha"}).json()
    assert len(large["data"][0]["embedding"]) == 3072
    short = http.post("/v1/embeddings", json={"model": "text-embedding-3-large",
                                              "input": "alpha", "dimensions": 256}).json()
    cut = np.asarray(short["data"][0]["embedding"])
    full = np.asarray(large["data"][0]["embedding"])
    assert len(cut) == 256 and np.allclose(cut, full[:256] / np.linalg.norm(full[:256]),
                                           atol=1e-6)
    packed = http.post("/v1/embeddings", json={"model": "text-embedding-3-large",
                                               "input": "alpha", "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), "<f4")
    assert np.allclose(decoded, full)
    assert http.post("/v1/embeddings", json={"model": "m", "input": []}).status_code == 400


# -- prompt caching --------------------------------------------------------------------


def test_openai_prefix_cache_reports_cached_tokens(http: httpx.Client) -> None:
    system: Message = {"role": "system", "content": long_text(2000, seed=11)}
    first = chat(http, messages=[system, *user("first question")])
    second = chat(http, messages=[system, *user("second question")])
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    system_tokens = count_message_tokens([system], "gpt-4o-mini") - 3
    assert 1024 <= cached <= system_tokens and (cached - 1024) % 128 == 0
    assert system_tokens - cached < 128
    again = chat(http, messages=[system, *user("second question")])["usage"]
    whole = again["prompt_tokens"] - 3  # the full prompt was seen: all of it is a prefix
    assert again["prompt_tokens_details"]["cached_tokens"] == 1024 + (whole - 1024) // 128 * 128
    short = [{"role": "system", "content": "short"}, *user("q")]
    chat(http, messages=short)
    assert chat(http, messages=short)["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_prefix_cache_expires_after_its_ttl() -> None:
    with SimServer(latency_scale=0, cache_ttl_s=0.2) as sim, \
            httpx.Client(base_url=sim.base_url) as client:
        messages = [{"role": "system", "content": long_text(1500, seed=5)}, *user("q")]
        chat(client, messages=messages)
        assert chat(client, messages=messages)["usage"]["prompt_tokens_details"][
            "cached_tokens"] > 0
        time.sleep(0.3)
        assert chat(client, messages=messages)["usage"]["prompt_tokens_details"][
            "cached_tokens"] == 0


def test_anthropic_cache_control_writes_then_reads(http: httpx.Client) -> None:
    system = [{"type": "text", "text": long_text(1800, seed=21),
               "cache_control": {"type": "ephemeral"}}]
    first = message(http, "one", system=system).json()["usage"]
    second = message(http, "two", system=system).json()["usage"]
    prefix = count_message_tokens([{"role": "system", "content": system}], "claude") - 3
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_creation_input_tokens"] == prefix
    assert second["cache_read_input_tokens"] == prefix
    assert second["cache_creation_input_tokens"] == 0
    body = {"system": system, "messages": user("two")}
    assert second["input_tokens"] + prefix == count_message_tokens(flatten_messages(body), "c")
    plain = [{"type": "text", "text": system[0]["text"]}]
    for _ in range(2):
        usage = message(http, "three", system=plain).json()["usage"]
        assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


def test_anthropic_cache_follows_a_moving_breakpoint(http: httpx.Client) -> None:
    block = {"type": "text", "text": long_text(1200, seed=31),
             "cache_control": {"type": "ephemeral"}}
    turns: list[dict[str, Any]] = [{"role": "user", "content": [block]}]
    first = message(http, messages=turns).json()["usage"]
    turns[0]["content"][0].pop("cache_control")
    turns += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": [
        {"type": "text", "text": "and then?", "cache_control": {"type": "ephemeral"}}]}]
    second = message(http, messages=turns).json()["usage"]
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"] > 0
    assert second["cache_creation_input_tokens"] > 0


def test_haiku_needs_2048_tokens_to_cache(http: httpx.Client) -> None:
    system = [{"type": "text", "text": long_text(1500, seed=41),
               "cache_control": {"type": "ephemeral"}}]
    for _ in range(2):
        usage = message(http, "x", system=system, model="claude-3-haiku-20240307").json()["usage"]
        assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0


# -- authorization ---------------------------------------------------------------------


def test_require_key_answers_401_without_a_key_and_never_echoes_keys() -> None:
    with SimServer(latency_scale=0, require_key=True) as sim, \
            httpx.Client(base_url=sim.base_url) as client:
        body = {"model": "gpt-4o", "messages": user("x")}
        missing = client.post("/v1/chat/completions", json=body)
        assert missing.status_code == 401 and "error" in missing.json()
        secret = "sk-very-secret-123"
        ok = client.post("/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {secret}"})
        assert ok.status_code == 200 and secret not in ok.text + str(ok.headers)
        anthropic_body = {"model": "claude-3-haiku-20240307", "max_tokens": 5,
                          "messages": user("x")}
        denied = client.post("/v1/messages", json=anthropic_body, headers=ANTHROPIC)
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "authentication_error"
        allowed = client.post("/v1/messages", json=anthropic_body,
                              headers={**ANTHROPIC, "x-api-key": secret})
        assert allowed.status_code == 200 and secret not in allowed.text
        assert secret not in str(sim.stats())


def test_keys_are_optional_by_default(http: httpx.Client) -> None:
    assert http.post("/v1/chat/completions",
                     json={"model": "gpt-4o", "messages": user("x")}).status_code == 200


# -- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "openai_status", "anthropic_status", "anthropic_type"), [
    ("429", 429, 429, "rate_limit_error"), ("500", 500, 500, "api_error"),
    ("503", 503, 503, "api_error"), ("529", 503, 529, "overloaded_error"),
])
def test_error_faults_by_header(http: httpx.Client, fault: str, openai_status: int,
                                anthropic_status: int, anthropic_type: str) -> None:
    headers = {"x-sim-fault": fault}
    response = http.post("/v1/chat/completions", headers=headers,
                         json={"model": "gpt-4o", "messages": user("x")})
    assert response.status_code == openai_status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    response = http.post("/v1/messages", headers={**ANTHROPIC, **headers}, json={
        "model": "claude-3-haiku-20240307", "max_tokens": 5, "messages": user("x")})
    assert response.status_code == anthropic_status
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == anthropic_type
    if fault == "429":
        assert parse_retry_after(response.headers) is not None


def test_429_carries_retry_after_seconds_or_an_http_date() -> None:
    faults = FaultConfig(rate_429=1.0, retry_after_seconds=2.0, http_date_share=0.5)
    with SimServer(latency_scale=0, faults=faults) as sim, \
            httpx.Client(base_url=sim.base_url) as client:
        kinds: Counter[str] = Counter()
        for _ in range(100):
            response = client.post("/v1/chat/completions",
                                   json={"model": "gpt-4o", "messages": user("x")})
            assert response.status_code == 429
            assert response.json()["error"]["code"] == "rate_limit_exceeded"
            if "retry-after-ms" in response.headers:
                assert response.headers["retry-after-ms"] == "2000"
                assert response.headers["retry-after"] == "2"
                kinds["seconds"] += 1
            else:
                assert 1.0 <= parse_retry_after(response.headers) <= 3.1  # type: ignore[operator]
                kinds["date"] += 1
        assert 30 <= kinds["date"] <= 70


def test_502_is_an_html_page_from_the_gateway(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", headers={"x-sim-fault": "502"},
                         json={"model": "gpt-4o", "messages": user("x")})
    assert response.status_code == 502 and response.headers["content-type"] == "text/html"
    assert "502 Bad Gateway" in response.text


def test_timeout_fault_holds_the_connection() -> None:
    faults = FaultConfig(timeout_seconds=0.5)
    with SimServer(latency_scale=0, faults=faults) as sim, \
            httpx.Client(base_url=sim.base_url) as client:
        body = {"model": "gpt-4o", "messages": user("x")}
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/chat/completions", json=body, headers={"x-sim-fault": "timeout"},
                        timeout=0.15)
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body,
                               headers={"x-sim-fault": "timeout"})
        assert response.status_code == 200 and time.perf_counter() - started >= 0.45


def raw_request(port: int, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """Send one request on a fresh socket and read until the server closes it."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    data = orjson.dumps(body)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(data)}\r\n{head}\r\n".encode() + data)
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return b"".join(parts)


def test_reset_fault_sends_a_tcp_reset(sim: SimServer, http: httpx.Client) -> None:
    with pytest.raises(ConnectionResetError):
        raw_request(sim.port, "/v1/chat/completions",
                    {"model": "gpt-4o", "messages": user("x")}, {"x-sim-fault": "reset"})
    with pytest.raises(httpx.TransportError):
        http.post("/v1/chat/completions", headers={"x-sim-fault": "reset"},
                  json={"model": "gpt-4o", "messages": user("x")})
    assert chat(http)["choices"]  # the client reconnects


def test_cut_fault_stops_a_stream_after_some_content(sim: SimServer, http: httpx.Client) -> None:
    body = {"model": "gpt-4o", "messages": user("cut me"), "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": 40}
    raw = raw_request(sim.port, "/v1/chat/completions", body, {"x-sim-fault": "cut"})
    assert raw.startswith(b"HTTP/1.1 200")
    assert b'"content":"' in raw and b"[DONE]" not in raw and not raw.endswith(b"0\r\n\r\n")
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/chat/completions", json=body, headers={"x-sim-fault": "cut"})
    anthropic = {"model": "claude-3-haiku-20240307", "max_tokens": 40, "stream": True,
                 "messages": user("cut me")}
    raw = raw_request(sim.port, "/v1/messages", anthropic, {**ANTHROPIC, "x-sim-fault": "cut"})
    assert b"text_delta" in raw and b"message_stop" not in raw
    with pytest.raises(httpx.RemoteProtocolError):  # a JSON answer shorter than announced
        http.post("/v1/chat/completions", headers={"x-sim-fault": "cut"},
                  json={"model": "gpt-4o", "messages": user("x")})


def test_malformed_fault_breaks_json_or_one_sse_line(http: httpx.Client) -> None:
    headers = {"x-sim-fault": "malformed"}
    response = http.post("/v1/chat/completions", headers=headers,
                         json={"model": "gpt-4o", "messages": user("x")})
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    response = http.post("/v1/chat/completions", headers=headers, json={
        "model": "gpt-4o", "messages": user("x"), "stream": True})
    broken = []
    for _, data in sse_data(response.text)[:-1]:
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            broken.append(data)
    assert len(broken) == 1 and response.text.endswith("data: [DONE]\n\n")


def test_unknown_fault_or_scale_header_is_a_400(http: httpx.Client) -> None:
    for header in ({"x-sim-fault": "gremlins"}, {"x-sim-latency-scale": "nan"},
                   {"x-sim-latency-scale": "-1"}):
        response = http.post("/v1/chat/completions", headers=header,
                             json={"model": "gpt-4o", "messages": user("x")})
        assert response.status_code == 400


def _outcome(client: httpx.Client, i: int) -> str:
    stream = i % 2 == 0
    body = {"model": "gpt-4o-mini", "messages": user(f"r{i}"), "max_tokens": 30,
            "stream": stream}
    try:
        response = client.post("/v1/chat/completions", json=body)
    except httpx.RemoteProtocolError:
        return "cut"
    except httpx.TransportError:
        return "reset"
    if response.status_code != 200:
        return str(response.status_code)
    try:
        if stream:
            for _, data in sse_data(response.text)[:-1]:
                orjson.loads(data)
        else:
            orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "malformed"
    return "ok"


def test_fault_rates_are_met_and_reproducible() -> None:
    faults = FaultConfig(rate_429=0.05, rate_500=0.03, rate_502=0.02, rate_503=0.02,
                         rate_529=0.02, rate_timeout=0.02, rate_reset=0.02,
                         rate_cut_stream=0.03, rate_malformed=0.03, timeout_seconds=0.0)
    n = 2000
    runs = []
    for _ in range(2):
        with SimServer(seed=99, latency_scale=0, faults=faults) as sim, \
                httpx.Client(base_url=sim.base_url, timeout=10) as client:
            runs.append([_outcome(client, i) for i in range(n)])
            stats = sim.stats()
    assert runs[0] == runs[1]
    seen = Counter(runs[0])
    expected = {"429": 0.05, "500": 0.03, "502": 0.02, "503": 0.02 + 0.02, "reset": 0.02,
                "cut": 0.03, "malformed": 0.03}
    for outcome, rate in expected.items():
        sigma = math.sqrt(n * rate * (1 - rate))
        assert abs(seen[outcome] - n * rate) <= 4 * sigma, (outcome, seen)
    for kind, rate in faults.rates():
        count = stats["faults"].get(kind.value, 0)
        assert abs(count - n * rate) <= 4 * math.sqrt(n * rate) + 1, (kind, stats["faults"])
    assert stats["faults"]["cut"] == seen["cut"] and stats["requests"] == n


def test_fault_plan_is_counter_based() -> None:
    config = FaultConfig(rate_429=0.3, rate_reset=0.2)
    plan = FaultPlan(config, seed=5)
    forward = [plan.decide(k).kind for k in range(500)]
    backward = [FaultPlan(config, seed=5).decide(k).kind for k in reversed(range(500))]
    assert forward == backward[::-1]
    assert plan.decide(3, "malformed").kind is FaultKind.MALFORMED
    with pytest.raises(ValueError, match="add up"):
        FaultConfig(rate_500=0.7, rate_502=0.4)


# -- latency ---------------------------------------------------------------------------


def test_default_latency_model_is_realistic() -> None:
    rng = random.Random(0)
    model = LatencyModel()
    timings = [model.sample(rng, model_spec("gpt-4o-mini"), 0) for _ in range(4000)]
    ttft = sorted(t.ttft_s for t in timings)[2000]
    tpot = sorted(t.tpot_s for t in timings)[2000]
    assert 0.32 <= ttft <= 0.38 and 0.014 <= tpot <= 0.016
    assert model.sample(rng, model_spec("gpt-4o"), 10_000).ttft_s > 1.0  # prefill


def test_latency_is_paced_and_scaled() -> None:
    steady = LatencyModel(ttft_median_s=0.3, ttft_sigma=1e-9, prefill_s_per_token=0,
                          tpot_sigma=1e-9)
    with SimServer(latency_scale=0.5, latency=steady) as sim, \
            httpx.Client(base_url=sim.base_url) as client:
        body = {"model": "gpt-4o-mini", "messages": user("pace"), "max_tokens": 20}
        started = time.perf_counter()
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        elapsed = time.perf_counter() - started
        assert 0.29 <= elapsed <= 0.6  # 0.5 x (0.3 s + 20 x 15 ms)
        started = time.perf_counter()
        arrivals = []
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            for line in r.iter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    arrivals.append(time.perf_counter() - started)
        assert 0.14 <= arrivals[0] <= 0.3 and arrivals[-1] - arrivals[0] >= 0.1
        started = time.perf_counter()
        client.post("/v1/chat/completions", json=body, headers={"x-sim-latency-scale": "0"})
        assert time.perf_counter() - started < 0.1


# -- stats, health, routing, lifecycle -------------------------------------------------


def test_health_and_stats(http: httpx.Client, sim: SimServer) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    before = sim.stats()
    body = chat(http, "count me")
    http.post("/v1/chat/completions", headers={"x-sim-fault": "500"},
              json={"model": "gpt-4o", "messages": user("x")})
    after = http.get("/sim/stats").json()
    assert after["requests"] - before["requests"] == 2
    assert after["faults"]["500"] - before["faults"].get("500", 0) == 1
    assert (after["tokens"]["completion"] - before["tokens"]["completion"]
            == body["usage"]["completion_tokens"])
    assert (after["tokens"]["prompt"] - before["tokens"]["prompt"]
            == body["usage"]["prompt_tokens"])
    assert after["endpoints"]["chat/completions"] >= 2
    assert http.get("/v1/models").json()["data"]


def test_unknown_routes_methods_and_bodies(http: httpx.Client) -> None:
    assert http.post("/v1/nothing", json={}).status_code == 404
    assert http.get("/v1/chat/completions").status_code == 405
    response = http.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 400 and "error" in response.json()
    assert http.post("/v1/chat/completions", json={"model": "gpt-4o"}).status_code == 400


def test_concurrent_clients_are_all_answered(sim: SimServer) -> None:
    failures: list[str] = []

    def worker(index: int) -> None:
        with httpx.Client(base_url=sim.base_url, timeout=10) as client:
            for i in range(100):
                if i % 3 == 2:
                    response = message(client, f"t{index}-{i}", max_tokens=50, stream=i % 2 == 0)
                else:
                    response = client.post("/v1/chat/completions", json={
                        "model": "gpt-4o", "messages": user(f"t{index}-{i}"),
                        "stream": i % 2 == 0})
                if response.status_code != 200 or not response.content:
                    failures.append(f"{index}/{i}: {response.status_code}")

    before = sim.stats()["requests"]
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and sim.stats()["requests"] - before == 800


def test_stop_is_prompt_with_idle_and_sleeping_connections() -> None:
    sim = SimServer(latency_scale=0, faults=FaultConfig(timeout_seconds=30)).start()
    client = httpx.Client(base_url=sim.base_url, timeout=30)
    assert client.get("/health").status_code == 200  # leaves an idle keep-alive connection
    errors: list[Exception] = []

    def sleep_in_a_timeout_fault() -> None:
        try:
            client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": user("x")},
                        headers={"x-sim-fault": "timeout"})
        except httpx.TransportError as exc:
            errors.append(exc)

    sleeper = threading.Thread(target=sleep_in_a_timeout_fault)
    sleeper.start()
    time.sleep(0.2)
    started = time.perf_counter()
    sim.stop()
    sleeper.join(timeout=5)
    client.close()
    assert time.perf_counter() - started < 2 and not sleeper.is_alive() and errors
    with pytest.raises(RuntimeError):
        _ = sim.base_url


# -- CLI -------------------------------------------------------------------------------


def _cli_args(*argv: str) -> argparse.Namespace:
    from devora_lab.cli import sim as sim_cli

    parser = argparse.ArgumentParser()
    sim_cli.register(parser.add_subparsers(dest="command"),
                     argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["sim", "serve", *argv])


def test_cli_serve_prints_urls_and_serves(capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli_args("--port", "0", "--latency-scale", "0", "--fault-429", "0.25")
    stop = threading.Event()
    thread = threading.Thread(target=args.handler, args=(args, stop))
    thread.start()
    output = ""
    for _ in range(100):
        output += capsys.readouterr().out
        if "ANTHROPIC_BASE_URL" in output:
            break
        time.sleep(0.02)
    base = output.split("export ANTHROPIC_BASE_URL=")[1].split()[0]
    assert f"export OPENAI_BASE_URL={base}/v1" in output and "429 25.0%" in output
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_cli_rejects_bad_rates() -> None:
    args = _cli_args("--fault-500", "0.8", "--fault-503", "0.8")
    with pytest.raises(ConfigError):
        args.handler(args)
