"""The real client stack against the simulator over real sockets: formats, faults, a soak."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devora_lab.errors import (
    AllModelsFailedError,
    DevoraError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderTimeoutError,
    StreamInterruptedError,
)
from devora_lab.events import EventLog
from devora_lab.llm.client import AsyncClient, Client
from devora_lab.llm.policy import RetryPolicy
from devora_lab.llm.pricing import PriceBook
from devora_lab.llm.routing import ProviderConfig, Router
from devora_lab.llm.tokens import count_tokens
from devora_lab.sim.faults import FaultConfig
from devora_lab.sim.server import SimServer

KEY = "sk-e2e-SECRET-abcdef0123456789"
ANT_KEY = "sk-ant-e2e-SECRET-abcdef0123456789"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": ANT_KEY}
ASK = [{"role": "system", "content": "You are a terse assistant."},
       {"role": "user", "content": "Summarise the design of an event log in two lines."}]
FAST = RetryPolicy(initial_backoff=0.0, max_backoff=0.0, max_retry_after=5.0)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=11, latency_scale=0, require_key=True,
                   faults=FaultConfig(timeout_seconds=2.0)) as server:
        yield server


def router(sim: SimServer, openai_fault: str | None = None,
           anthropic_fault: str | None = None) -> Router:
    def headers(fault: str | None) -> dict[str, str] | None:
        return {"x-sim-fault": fault} if fault else None

    return Router({
        "openai": ProviderConfig("openai", sim.openai_base_url, "OPENAI_API_KEY",
                                 headers(openai_fault)),
        "anthropic": ProviderConfig("anthropic", sim.anthropic_base_url, "ANTHROPIC_API_KEY",
                                    headers(anthropic_fault)),
    }, env=ENV)


def rows(log: EventLog, sql: str = "SELECT * FROM events ORDER BY ts") -> list[dict[str, Any]]:
    with log.store() as store:
        return store.df(sql).to_dict("records")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-haiku-20240307"])
def test_json_call_is_counted_priced_and_logged(sim: SimServer, tmp_path: Path,
                                                model: str) -> None:
    log = EventLog(tmp_path / "events")
    with Client(event_log=log, router=router(sim), retry=FAST) as client:
        reply = client.complete(ASK, model=model, temperature=0, max_tokens=200)
    assert reply.text and reply.finish_reason in ("stop", "length")
    assert reply.usage.output_tokens == pytest.approx(count_tokens(reply.text, model), rel=0.03)
    assert reply.cost_usd == pytest.approx(PriceBook.default().cost(
        model, reply.usage.input_tokens, reply.usage.output_tokens,
        reply.usage.cached_input_tokens, reply.usage.cache_creation_input_tokens))
    call = rows(log, "SELECT * FROM events WHERE kind = 'llm.call'")[0]
    assert call["request_id"] == reply.request_id and call["output_tokens"] == \
        reply.usage.output_tokens
    assert call["cost_usd"] == pytest.approx(reply.cost_usd)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-5-sonnet-20241022"])
def test_stream_equals_its_json_twin(sim: SimServer, tmp_path: Path, model: str) -> None:
    log = EventLog(tmp_path / "events")
    with Client(event_log=log, router=router(sim), retry=FAST) as client:
        whole = client.complete(ASK, model=model, seed=3)
        stream = client.stream(ASK, model=model, seed=3)
        pieces = [chunk.text for chunk in stream if chunk.text]
    assert len(pieces) > 1 and "".join(pieces) == whole.text
    assert stream.completion is not None
    assert stream.completion.usage.output_tokens == whole.usage.output_tokens
    assert stream.completion.ttft_ms is not None
    assert stream.completion.ttft_ms <= stream.completion.latency_ms


def test_failing_provider_falls_back_to_another(sim: SimServer, tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    with Client(event_log=log, router=router(sim, openai_fault="503"), retry=FAST) as client:
        reply = client.complete(ASK, model="gpt-4o", fallbacks=["claude-3-haiku-20240307"])
    assert reply.provider == "anthropic" and reply.attempts == 4 and reply.fallback_index == 1
    attempts = rows(log, "SELECT http_status, status FROM events WHERE kind = 'llm.attempt' "
                         "ORDER BY attempt")
    assert [a["http_status"] for a in attempts] == [503, 503, 503, 200]


@pytest.mark.parametrize(("fault", "error"), [
    ("reset", ProviderConnectionError),
    ("malformed", MalformedResponseError),
    ("timeout", ProviderTimeoutError),
])
def test_each_transport_fault_ends_in_its_typed_error(sim: SimServer, tmp_path: Path,
                                                     fault: str, error: type) -> None:
    log = EventLog(tmp_path / "events")
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=0.0)
    with Client(event_log=log, router=router(sim, openai_fault=fault), timeout=0.5,
                retry=retry) as client, pytest.raises(error):
        client.complete(ASK, model="gpt-4o-mini")
    kinds = [r["kind"] for r in rows(log)]
    assert kinds.count("llm.attempt") == 2 and kinds.count("llm.call") == 1


def test_stream_cut_after_text_keeps_the_partial_answer(sim: SimServer, tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    with Client(event_log=log, router=router(sim, anthropic_fault="cut"), retry=FAST) as c:
        stream = c.stream(ASK, model="claude-3-haiku-20240307")
        with pytest.raises(StreamInterruptedError) as caught:
            for _ in stream:
                pass
    assert caught.value.partial_text
    call = rows(log, "SELECT * FROM events WHERE kind = 'llm.call'")[0]
    assert call["status"] == "error" and call["error_type"] == "StreamInterruptedError"


def test_api_keys_never_leave_the_request(sim: SimServer, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog(tmp_path / "events")
    texts: list[str] = []
    with caplog.at_level("DEBUG"), Client(event_log=log, router=router(sim, "429"),
                                          content_policy="full", retry=FAST) as client:
        client.complete([{"role": "user", "content": "hello"}], model="claude-3-haiku-20240307")
        with pytest.raises(DevoraError) as caught:
            client.complete(ASK, model="gpt-4o-mini", fallbacks=["gpt-4o"])
        texts += [str(caught.value), repr(caught.value), repr(client.settings.router.resolve(
            "gpt-4o").adapter)]
    log.close()
    texts += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*")
              if p.is_file()]
    texts += [caplog.text, str(rows(log))]
    assert all(KEY not in text and ANT_KEY not in text for text in texts)


def test_readme_example_runs_against_the_simulator(sim: SimServer, tmp_path: Path) -> None:
    script = (
        "from devora_lab import Client\n"
        "client = Client.from_workspace()\n"
        "reply = client.complete([{'role': 'user', 'content': 'Say hi'}], model='gpt-4o-mini')\n"
        "print(reply.text[:20], reply.usage.total_tokens, reply.cost_usd, reply.latency_ms)\n"
    )
    env = {**os.environ, **sim.env(), "OPENAI_API_KEY": KEY,
           "DEVORA_WORKSPACE": str(tmp_path / "ws")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    with EventLog(tmp_path / "ws" / "events").store() as store:
        assert store.count("llm.call") == 1


SOAK_CALLS = 5000
SOAK_FAULTS = FaultConfig(rate_429=0.08, rate_500=0.04, rate_502=0.03, rate_503=0.03,
                          rate_529=0.03, rate_timeout=0.02, rate_reset=0.03,
                          rate_cut_stream=0.02, rate_malformed=0.02, retry_after_seconds=0.01,
                          http_date_share=0.0, timeout_seconds=2.5)


@pytest.mark.slow
def test_fault_soak(tmp_path: Path) -> None:
    """5,000 calls with 30 % injected faults: every call ends in success or a typed error,
    ≥ 99.9 % succeed with one fallback model, every attempt is logged once, no double cost."""
    log = EventLog(tmp_path / "events")

    async def soak(sim: SimServer) -> list[Any]:
        client = AsyncClient(event_log=log, router=router(sim), timeout=1.0,
                             # 4 tries per model: with 30 % faults a call then fails only
                             # if 8 tries in a row do (0.3**8, ~0.007 %), well inside 0.1 %
                             retry=RetryPolicy(max_attempts=4, initial_backoff=0.0,
                                               max_backoff=0.01, max_retry_after=1.0),
                             fallbacks={"gpt-4o-mini": ["claude-3-haiku-20240307"]})
        gate = asyncio.Semaphore(48)

        async def one(i: int) -> Any:
            async with gate:
                try:
                    return await client.complete(
                        [{"role": "user", "content": f"question {i}: explain item {i % 97}"}],
                        model="gpt-4o-mini", max_tokens=64)
                except DevoraError as exc:
                    return exc

        try:
            return await asyncio.gather(*(one(i) for i in range(SOAK_CALLS)))
        finally:
            await client.aclose()

    with SimServer(seed=5, latency_scale=0, faults=SOAK_FAULTS) as sim:
        outcomes = asyncio.run(soak(sim))
        served = sim.stats()
    log.close()
    failures = [o for o in outcomes if isinstance(o, DevoraError)]
    assert all(isinstance(o, DevoraError) or o.text for o in outcomes)
    assert all(isinstance(f, AllModelsFailedError | DevoraError) for f in failures)
    assert len(failures) <= SOAK_CALLS * 0.001, [str(f) for f in failures[:3]]
    with log.store() as store:
        calls, attempts, call_cost, ids = store.rows(
            "SELECT count(*) FILTER (WHERE kind = 'llm.call'), "
            "count(*) FILTER (WHERE kind = 'llm.attempt'), "
            "sum(cost_usd) FILTER (WHERE kind = 'llm.call'), count(DISTINCT event_id) "
            "FROM events")[0]
        attempt_cost = store.scalar("SELECT sum(cost_usd) FROM events WHERE kind = 'llm.attempt'")
        per_call = store.rows("SELECT request_id, count(*) FROM events WHERE kind = 'llm.call' "
                              "GROUP BY 1 HAVING count(*) > 1")
    assert calls == SOAK_CALLS and not per_call
    assert attempts == served["endpoints"]["chat/completions"] + served["endpoints"].get(
        "messages", 0)
    assert ids == calls + attempts  # every event once
    expected = sum(o.cost_usd for o in outcomes if not isinstance(o, DevoraError))
    assert call_cost == pytest.approx(expected) and attempt_cost is None
    assert sum(served["faults"].values()) >= 0.25 * served["requests"]
