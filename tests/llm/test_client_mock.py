"""Client and AsyncClient over httpx.MockTransport: every retry, fallback and usage branch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from devora_lab.errors import (
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ModelRoutingError,
    ProviderOverloadedError,
    StreamInterruptedError,
)
from devora_lab.events import EventLog
from devora_lab.llm.client import AsyncClient, Client
from devora_lab.llm.driver import Tags
from devora_lab.llm.policy import CircuitBreaker, RetryPolicy
from devora_lab.llm.routing import ProviderConfig, Router

KEY = "sk-test-SECRET-0123456789abcdef"
ANT_KEY = "sk-ant-test-SECRET-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
Handler = Callable[[httpx.Request], httpx.Response]


def openai_json(text: str = "Hello", model: str = "gpt-4o-2024-08-06", prompt: int = 12,
                completion: int = 3, cached: int = 0) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "prompt_tokens_details": {"cached_tokens": cached}}})


def anthropic_json(text: str = "Hi there", read: int = 0, write: int = 0) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-3-haiku-20240307", "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": read,
                  "cache_creation_input_tokens": write}})


def error(status: int, message: str = "failure", **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {"message": message}})


def sse(*events: str) -> httpx.Response:
    body = "".join(f"{e}\n\n" for e in events).encode()
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


class Script:
    """Answers requests in order and remembers them."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def models(self) -> list[str]:
        return [orjson.loads(r.content)["model"] for r in self.requests]


@pytest.fixture
def env() -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": ANT_KEY}


def make_client(script: Handler, tmp_path: Path, env: dict[str, str],
                **options: Any) -> tuple[Client, EventLog]:
    log = EventLog(tmp_path / "events")
    router = Router({"openai": ProviderConfig("openai", "http://openai.test/v1", "OPENAI_API_KEY"),
                     "anthropic": ProviderConfig("anthropic", "http://anthropic.test",
                                                 "ANTHROPIC_API_KEY")}, env=env)
    options.setdefault("retry", RetryPolicy(initial_backoff=0.0, max_backoff=0.0))
    client = Client(event_log=log, router=router, transport=httpx.MockTransport(script),
                    **options)
    return client, log


def events(log: EventLog) -> list[dict[str, Any]]:
    with log.store() as store:
        return store.df("SELECT * FROM events ORDER BY ts, kind DESC").to_dict("records")


def test_success_is_priced_and_logged_once(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(openai_json(prompt=1000, completion=100, cached=400))
    client, log = make_client(script, tmp_path, env)
    result = client.complete(MESSAGES, model="gpt-4o", temperature=0, seed=7,
                             tags=Tags(agent="coder", user_id="u1"))
    assert result.text == "Hello" and result.model == "gpt-4o-2024-08-06"
    assert result.usage.input_tokens == 1000 and result.usage.cached_input_tokens == 400
    # 600 uncached at $2.50/M + 400 cached at $1.25/M + 100 output at $10/M
    assert result.cost_usd == pytest.approx((600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6)
    request = script.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = orjson.loads(request.content)
    assert body["seed"] == 7 and body["temperature"] == 0
    rows = events(log)
    assert [r["kind"] for r in rows] == ["llm.attempt", "llm.call"]
    call = rows[1]
    assert call["agent"] == "coder" and call["user_id"] == "u1"
    assert call["cost_usd"] == pytest.approx(result.cost_usd)
    assert call["cost_status"] == "priced" and call["price_book_version"]
    assert rows[0]["cost_usd"] is None or rows[0]["cost_usd"] != rows[0]["cost_usd"]


def test_retries_honour_retry_after_then_succeed(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(error(429, **{"retry-after-ms": "5"}), error(503), openai_json())
    client, log = make_client(script, tmp_path, env)
    result = client.complete(MESSAGES, model="gpt-4o")
    assert result.attempts == 3 and result.fallback_index == 0
    rows = events(log)
    attempts = [r for r in rows if r["kind"] == "llm.attempt"]
    assert [a["http_status"] for a in attempts] == [429, 503, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert {r["request_id"] for r in rows} == {result.request_id}


def test_connection_errors_and_timeouts_are_retried(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), openai_json())
    client, _ = make_client(script, tmp_path, env)
    assert client.complete(MESSAGES, model="gpt-4o").attempts == 3


def test_non_retryable_error_is_raised_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(error(400, "bad schema"))
    client, log = make_client(script, tmp_path, env, fallbacks={"gpt-4o": ["gpt-4o-mini"]})
    with pytest.raises(BadRequestError) as caught:
        client.complete(MESSAGES, model="gpt-4o")
    assert caught.value.status == 400 and len(script.requests) == 1
    call = events(log)[-1]
    assert call["kind"] == "llm.call" and call["status"] == "error"
    assert call["error_type"] == "BadRequestError"


def test_exhausted_retries_fall_back_to_the_next_model(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    script = Script(error(503), error(503), error(503), anthropic_json())
    client, log = make_client(script, tmp_path, env,
                              fallbacks={"gpt-4o": ["claude-3-haiku-20240307"]})
    result = client.complete(MESSAGES, model="gpt-4o")
    assert result.provider == "anthropic" and result.fallback_index == 1
    assert result.attempts == 4 and result.requested_model == "gpt-4o"
    assert script.models() == ["gpt-4o"] * 3 + ["claude-3-haiku-20240307"]
    anthropic_request = script.requests[-1]
    assert anthropic_request.headers["x-api-key"] == ANT_KEY
    body = orjson.loads(anthropic_request.content)
    assert body["system"] == "Be brief." and body["max_tokens"] == 4096
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    call = events(log)[-1]
    assert call["fallback_index"] == 1 and call["response_model"] == "claude-3-haiku-20240307"


def test_context_overflow_falls_back_to_a_larger_model(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    script = Script(error(400, "This model's maximum context length is 8192 tokens"),
                    openai_json(model="gpt-4o"))
    client, _ = make_client(script, tmp_path, env)
    result = client.complete(MESSAGES, model="gpt-4", fallbacks=["gpt-4o"])
    assert result.fallback_index == 1 and script.models() == ["gpt-4", "gpt-4o"]


def test_every_model_failing_raises_with_each_error(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(*[error(529, "overloaded")] * 6)
    client, log = make_client(script, tmp_path, env)
    with pytest.raises(AllModelsFailedError) as caught:
        client.complete(MESSAGES, model="gpt-4o", fallbacks=["gpt-4o-mini"])
    assert [type(e) for e in caught.value.errors] == [ProviderOverloadedError] * 2
    rows = events(log)
    assert sum(r["kind"] == "llm.attempt" for r in rows) == 6
    assert sum(r["kind"] == "llm.call" for r in rows) == 1


def test_circuit_breaker_skips_a_failing_model(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(error(500), openai_json(model="gpt-4o-mini"), openai_json(model="gpt-4o-mini"))
    breaker = CircuitBreaker(threshold=1, cooldown=60.0)
    client, log = make_client(script, tmp_path, env, breaker=breaker,
                              retry=RetryPolicy(max_attempts=1),
                              fallbacks={"gpt-4o": ["gpt-4o-mini"]})
    client.complete(MESSAGES, model="gpt-4o")
    second = client.complete(MESSAGES, model="gpt-4o")
    assert second.fallback_index == 1
    assert script.models() == ["gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    skipped = [r for r in events(log) if r["status"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["error_type"] == "CircuitOpen"


def test_anthropic_usage_is_normalised_without_double_counting(tmp_path: Path,
                                                               env: dict[str, str]) -> None:
    script = Script(anthropic_json(read=300, write=50))
    client, _ = make_client(script, tmp_path, env)
    result = client.complete(MESSAGES, model="claude-3-haiku-20240307")
    usage = result.usage
    assert (usage.input_tokens, usage.cached_input_tokens,
            usage.cache_creation_input_tokens) == (360, 300, 50)
    # 10 uncached at $0.25/M, 300 reads at $0.03/M, 50 writes at $0.30/M, 4 out at $1.25/M
    expected = (10 * 0.25 + 300 * 0.03 + 50 * 0.30 + 4 * 1.25) / 1e6
    assert result.cost_usd == pytest.approx(expected)


def test_unknown_model_is_unpriced_not_free(tmp_path: Path, env: dict[str, str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    script = Script(openai_json(model="my-finetune"), openai_json(model="my-finetune"))
    client, log = make_client(script, tmp_path, env)
    with caplog.at_level("WARNING", logger="devora_lab.llm"):
        result = client.complete(MESSAGES, model="openai/my-finetune")
        client.complete(MESSAGES, model="openai/my-finetune")
    assert caplog.text.count("my-finetune is not in the price book") == 1
    assert result.cost_usd is None and result.cost_status == "unpriced"
    call = events(log)[-1]
    assert call["cost_status"] == "unpriced" and call["cost_usd"] != 0


def test_unroutable_model_is_a_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    client, _ = make_client(Script(), tmp_path, env)
    with pytest.raises(ModelRoutingError, match="llama-3"):
        client.complete(MESSAGES, model="llama-3")


def test_tool_calls_and_params_pass_through(tmp_path: Path, env: dict[str, str]) -> None:
    answer = httpx.Response(200, json={
        "id": "c", "model": "gpt-4o", "choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5}})
    script = Script(answer)
    client, _ = make_client(script, tmp_path, env)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    result = client.complete(MESSAGES, model="gpt-4o", tools=tools, tool_choice="auto",
                             response_format={"type": "json_object"}, stop=["END"],
                             max_tokens=50, top_p=0.9)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0].parsed_arguments() == {"city": "Oslo"}
    body = orjson.loads(script.requests[0].content)
    for key in ("tools", "tool_choice", "response_format", "stop", "max_tokens", "top_p"):
        assert key in body


OPENAI_STREAM = [
    'data: {"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant"}}]}',
    'data: {"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hel"}}]}',
    'data: {"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"lo"},'
    '"finish_reason":"stop"}]}',
    'data: {"id":"c1","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,'
    '"completion_tokens":2}}',
    "data: [DONE]",
]
ANTHROPIC_STREAM = [
    'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","model":'
    '"claude-3-haiku-20240307","usage":{"input_tokens":7,"cache_read_input_tokens":3,'
    '"output_tokens":1}}}',
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    '"content_block":{"type":"text","text":""}}',
    'event: ping\ndata: {"type":"ping"}',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"Hi "}}',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    '"delta":{"type":"text_delta","text":"there"}}',
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    '"usage":{"output_tokens":5}}',
    'event: message_stop\ndata: {"type":"message_stop"}',
]


def test_openai_stream_yields_text_and_final_usage(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(sse(*OPENAI_STREAM))
    client, log = make_client(script, tmp_path, env)
    stream = client.stream(MESSAGES, model="gpt-4o")
    texts = [chunk.text for chunk in stream if chunk.text]
    assert texts == ["Hel", "lo"]
    assert stream.completion is not None and stream.completion.text == "Hello"
    assert stream.completion.usage.output_tokens == 2 and stream.completion.ttft_ms is not None
    body = orjson.loads(script.requests[0].content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    call = events(log)[-1]
    assert call["streamed"] and call["output_tokens"] == 2


def test_anthropic_stream_usage_is_cumulative(tmp_path: Path, env: dict[str, str]) -> None:
    script = Script(sse(*ANTHROPIC_STREAM))
    client, _ = make_client(script, tmp_path, env)
    stream = client.stream(MESSAGES, model="claude-3-haiku-20240307")
    assert stream.text() == "Hi there"
    assert stream.completion is not None
    usage = stream.completion.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (10, 3, 5)


def test_stream_failing_before_first_token_falls_back(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    cut = sse(OPENAI_STREAM[0])  # role only, then the connection ends
    script = Script(error(529), cut, sse(*OPENAI_STREAM))
    client, _ = make_client(script, tmp_path, env, retry=RetryPolicy(max_attempts=1))
    stream = client.stream(MESSAGES, model="gpt-4o", fallbacks=["gpt-4o-mini", "gpt-4"])
    assert stream.text() == "Hello"
    assert stream.completion is not None and stream.completion.fallback_index == 2


def test_stream_cut_after_text_raises_with_the_partial_text(tmp_path: Path,
                                                            env: dict[str, str]) -> None:
    script = Script(sse(*OPENAI_STREAM[:2]))
    client, log = make_client(script, tmp_path, env, fallbacks={"gpt-4o": ["gpt-4o-mini"]})
    stream = client.stream(MESSAGES, model="gpt-4o")
    with pytest.raises(StreamInterruptedError) as caught:
        list(stream)
    assert caught.value.partial_text == "Hel" and len(script.requests) == 1
    call = events(log)[-1]
    assert call["kind"] == "llm.call" and call["error_type"] == "StreamInterruptedError"


def test_stream_closed_early_is_logged_as_cancelled(tmp_path: Path, env: dict[str, str]) -> None:
    client, log = make_client(Script(sse(*OPENAI_STREAM)), tmp_path, env)
    with client.stream(MESSAGES, model="gpt-4o") as stream:
        next(iter(stream))
    assert events(log)[-1]["status"] == "cancelled"


def _all_output(log: EventLog, tmp_path: Path) -> Iterator[str]:
    for path in tmp_path.rglob("*"):
        if path.is_file():
            yield path.read_bytes().decode("utf-8", "replace")
    with log.store() as store:
        yield store.df("SELECT * FROM events").to_csv()


def test_keys_never_reach_events_files_or_errors(tmp_path: Path, env: dict[str, str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    echo = error(401, f"Incorrect API key provided: {KEY}")
    script = Script(echo, httpx.ConnectError(f"failed with header Bearer {KEY}"),
                    openai_json(), openai_json())
    client, log = make_client(script, tmp_path, env, content_policy="full",
                              retry=RetryPolicy(max_attempts=1))
    with pytest.raises(AuthenticationError) as caught:
        client.complete(MESSAGES, model="gpt-4o")
    texts = [str(caught.value), repr(caught.value), caught.value.message]
    with pytest.raises(Exception) as second:
        client.complete(MESSAGES, model="gpt-4o")
    texts += [str(second.value), repr(client.settings.router.adapter("openai"))]
    client.complete([{"role": "user", "content": f"my key is {KEY}"}], model="gpt-4o")
    log.close()
    texts += [*list(_all_output(log, tmp_path)), caplog.text]
    for text in texts:
        assert KEY not in text and ANT_KEY not in text


def _scripted() -> list[httpx.Response]:
    return [error(429, **{"retry-after": "0"}), openai_json(), error(400, "nope"),
            error(503), error(503), anthropic_json()]


def _summary(log: EventLog) -> list[tuple[Any, ...]]:
    with log.store() as store:
        return store.rows("SELECT kind, attempt, status, http_status, request_model, "
                          "response_model, input_tokens, output_tokens, cost_usd, error_type, "
                          "fallback_index FROM events ORDER BY kind, request_model, attempt, "
                          "status")


def test_sync_and_async_behave_identically(tmp_path: Path, env: dict[str, str]) -> None:
    def run_sync() -> list[Any]:
        client, log = make_client(Script(*_scripted()), tmp_path / "sync", env,
                                  fallbacks={"gpt-4o-mini": ["claude-3-haiku-20240307"]},
                                  retry=RetryPolicy(max_attempts=2, initial_backoff=0.0,
                                                    max_backoff=0.0))
        results: list[Any] = [client.complete(MESSAGES, model="gpt-4o").text]
        with pytest.raises(BadRequestError):
            client.complete(MESSAGES, model="gpt-4o")
        results.append(client.complete(MESSAGES, model="gpt-4o-mini").provider)
        return [results, _summary(log)]

    async def run_async() -> list[Any]:
        log = EventLog(tmp_path / "async" / "events")
        router = Router({"openai": ProviderConfig("openai", "http://openai.test/v1",
                                                  "OPENAI_API_KEY"),
                         "anthropic": ProviderConfig("anthropic", "http://anthropic.test",
                                                     "ANTHROPIC_API_KEY")}, env=env)
        async with AsyncClient(event_log=log, router=router,
                               transport=httpx.MockTransport(Script(*_scripted())),
                               fallbacks={"gpt-4o-mini": ["claude-3-haiku-20240307"]},
                               retry=RetryPolicy(max_attempts=2, initial_backoff=0.0,
                                                 max_backoff=0.0)) as client:
            results: list[Any] = [(await client.complete(MESSAGES, model="gpt-4o")).text]
            with pytest.raises(BadRequestError):
                await client.complete(MESSAGES, model="gpt-4o")
            results.append((await client.complete(MESSAGES, model="gpt-4o-mini")).provider)
            stream = client.stream(MESSAGES, model="gpt-4o")
            assert stream is not None
        return [results, _summary(log)]

    assert run_sync() == asyncio.run(run_async())


def test_async_stream_matches_sync_stream(tmp_path: Path, env: dict[str, str]) -> None:
    async def run() -> str:
        router = Router({"openai": ProviderConfig("openai", "http://x/v1", "OPENAI_API_KEY")},
                        env=env)
        async with AsyncClient(router=router,
                               transport=httpx.MockTransport(Script(sse(*OPENAI_STREAM)))) as c:
            stream = c.stream(MESSAGES, model="gpt-4o")
            parts = [chunk.text async for chunk in stream]
            assert stream.completion is not None
            return "".join(parts)

    assert asyncio.run(run()) == "Hello"


def test_prompt_too_long_is_not_sent_and_falls_back_to_a_larger_model(
        tmp_path: Path, env: dict[str, str]) -> None:
    from devora_lab.llm.pricing import PriceBook

    book = PriceBook.default().with_overrides({"version": "small", "models": {
        "gpt-small": {"input": 1.0, "output": 1.0, "context_window": 1000}}})
    script = Script(openai_json(model="gpt-4o"))
    client, log = make_client(script, tmp_path, env, price_book=book)
    huge = [{"role": "user", "content": "word " * 3000}]
    result = client.complete(huge, model="gpt-small", fallbacks=["gpt-4o"])
    assert script.models() == ["gpt-4o"] and result.fallback_index == 1
    skipped = [r for r in events(log) if r["status"] == "skipped"]
    assert [s["error_type"] for s in skipped] == ["ContextWindowError"]
    script.responses.append(openai_json(model="gpt-small"))
    small = client.complete([{"role": "user", "content": "hi"}], model="gpt-small")
    assert small.fallback_index == 0  # short prompts are sent as usual


def test_prompt_too_long_without_fallback_raises_before_sending(
        tmp_path: Path, env: dict[str, str]) -> None:
    from devora_lab.errors import ContextWindowError

    script = Script()
    client, _ = make_client(script, tmp_path, env)
    with pytest.raises(ContextWindowError, match="not sent"):
        client.complete([{"role": "user", "content": "token " * 140_000}], model="gpt-4o")
    assert script.requests == []


def test_estimate_prices_the_worst_case_without_sending(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    from devora_lab.llm.tokens import count_message_tokens

    script = Script()
    client, _ = make_client(script, tmp_path, env)
    estimate = client.estimate(MESSAGES, model="gpt-4o", max_tokens=500)
    tokens = count_message_tokens(MESSAGES, "gpt-4o")
    assert estimate.input_tokens == tokens and estimate.exact and estimate.fits
    assert estimate.max_cost_usd == pytest.approx((tokens * 2.5 + 500 * 10) / 1e6)
    claude = client.estimate(MESSAGES, model="claude-3-haiku-20240307")
    assert not claude.exact and claude.max_output_tokens == 4096
    assert client.estimate(MESSAGES, model="openai/unknown").max_cost_usd is None
    assert script.requests == []
