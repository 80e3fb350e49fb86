"""The Prometheus metrics: exact values on a hand-built log, the same series live from a
client's observers, the scan remembered while the log is unchanged, budget gauges, and a
dashboard that only asks for metrics the exporter has."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from devora_lab.costs.budgets import Budget, BudgetGuard, CallScope
from devora_lab.costs.ledger import LocalLedger
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.llm.client import AsyncClient, Client
from devora_lab.llm.driver import Tags
from devora_lab.llm.routing import ProviderConfig, Router
from devora_lab.monitoring.prometheus import (
    DURATION_BUCKETS,
    METRIC_NAMES,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    ClientMetrics,
    EventLogCollector,
)

if TYPE_CHECKING:
    from conftest import MakeLLMCall

DASHBOARD = Path(__file__).parents[2] / "dashboards" / "grafana" / "devora_lab.json"
OK = {"model": "gpt-4o", "provider": "openai", "agent": "coder", "status": "ok"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def call(**fields: Any) -> Event:
    base: dict[str, Any] = {"kind": EventKind.LLM_CALL, "request_model": "gpt-4o",
                            "provider": "openai", "agent": "coder", "status": "ok",
                            "cost_status": "priced", "attempt": 1, "fallback_index": 0}
    base.update(fields)
    return Event(**{name: value for name, value in base.items() if value is not None})


# Five calls whose metrics are worked out by hand below; values sit on bucket boundaries
# where that tests `le` (less than or equal).
CALLS = [
    call(latency_ms=300.0, ttft_ms=50.0, input_tokens=100, output_tokens=20, cost_usd=0.25,
         cache_outcome="miss"),
    call(latency_ms=1500.0, input_tokens=1000, output_tokens=5, cost_usd=0.5, attempt=3,
         fallback_index=1, cache_outcome="miss"),
    call(latency_ms=10.0, input_tokens=100, output_tokens=20, cost_usd=0.0, attempt=0,
         cache_outcome="hit"),  # a cache hit: no provider tokens
    call(request_model="mystery", provider=None, agent=None, latency_ms=100_000.0,
         input_tokens=4, output_tokens=1, cost_usd=None, cost_status="unpriced"),
    call(status="error", latency_ms=640.0, attempt=2, cost_status=None, http_status=429),
]
OTHER_KINDS = [Event(kind=EventKind.LLM_ATTEMPT, request_model="gpt-4o", latency_ms=5.0,
                     status="ok", input_tokens=7),
               Event(kind=EventKind.CACHE, request_model="gpt-4o", cache_outcome="hit")]


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def scrape(collector: Any) -> Samples:
    registry = collector.registry if isinstance(collector, ClientMetrics) else None
    if registry is None:
        registry = CollectorRegistry()
        registry.register(collector)
    return samples(generate_latest(registry).decode())


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def buckets(found: Samples, name: str, bounds: tuple[float, ...], **labels: str) -> list[float]:
    """The cumulative bucket counts of one series, in the order of ``bounds``, then +Inf."""
    want = frozenset(labels.items())
    rows = {float(dict(key)["le"]): v for (metric, key), v in found.items()
            if metric == f"{name}_bucket" and frozenset(i for i in key if i[0] != "le") == want}
    return [rows[float(b)] for b in bounds] + [rows[float("inf")]]


def cumulative(values: list[float], bounds: tuple[float, ...]) -> list[float]:
    return [float(sum(v <= b for v in values)) for b in bounds] + [float(len(values))]


@pytest.fixture
def built_log(tmp_path: Path) -> Iterator[EventLog]:
    # Rolls every 3 events: the metrics then span Parquet files and a live spool segment.
    event_log = EventLog(tmp_path / "events", roll_max_events=3, roll_max_seconds=3600)
    for event in [*CALLS, *OTHER_KINDS]:
        event_log.write(event)
    yield event_log
    event_log.close()


@pytest.fixture
def collector(built_log: EventLog) -> Iterator[EventLogCollector]:
    exporter = EventLogCollector(built_log)
    yield exporter
    exporter.close()


def test_counters_match_hand_computed_values(collector: EventLogCollector) -> None:
    found = scrape(collector)
    assert value(found, "devora_llm_calls_total", **OK) == 3
    assert value(found, "devora_llm_cost_usd_total", **OK) == 0.75
    assert value(found, "devora_llm_tokens_total", **OK, type="input") == 1100  # hit left out
    assert value(found, "devora_llm_tokens_total", **OK, type="output") == 25
    assert value(found, "devora_llm_retries_total", **OK) == 2
    assert value(found, "devora_llm_fallbacks_total", **OK) == 1
    unknown = {"model": "mystery", "provider": "unknown", "agent": "unknown", "status": "ok"}
    assert value(found, "devora_llm_calls_total", **unknown) == 1
    assert value(found, "devora_llm_unpriced_calls_total", **unknown) == 1
    assert value(found, "devora_llm_cost_usd_total", **unknown) == 0
    error = {**OK, "status": "error"}
    assert value(found, "devora_llm_calls_total", **error) == 1
    assert value(found, "devora_llm_retries_total", **error) == 1
    cache = {"model": "gpt-4o", "provider": "openai", "agent": "coder"}
    assert value(found, "devora_llm_cache_lookups_total", **cache) == 3  # miss, miss, hit
    assert value(found, "devora_llm_cache_hits_total", **cache) == 1
    assert value(found, "devora_llm_cache_hit_ratio", **cache) == pytest.approx(1 / 3)
    total_calls = sum(v for (name, _), v in found.items() if name == "devora_llm_calls_total")
    assert total_calls == 5  # attempts and cache events are not calls


def test_histograms_match_hand_computed_buckets(collector: EventLogCollector) -> None:
    found = scrape(collector)
    name = "gen_ai_client_operation_duration_seconds"
    assert buckets(found, name, DURATION_BUCKETS, **OK) == cumulative([0.3, 1.5, 0.01],
                                                                      DURATION_BUCKETS)
    assert buckets(found, name, DURATION_BUCKETS, **OK)[:3] == [1, 1, 1]  # 10 ms: le="0.01"
    assert value(found, f"{name}_count", **OK) == 3
    assert value(found, f"{name}_sum", **OK) == pytest.approx(1.81)
    error = {**OK, "status": "error"}
    assert buckets(found, name, DURATION_BUCKETS, **error)[6] == 1  # 640 ms: le="0.64"
    mystery = {"model": "mystery", "provider": "unknown", "agent": "unknown", "status": "ok"}
    assert buckets(found, name, DURATION_BUCKETS, **mystery) == [0.0] * 14 + [1.0]  # 100 s
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert buckets(found, ttft, TTFT_BUCKETS, **OK) == cumulative([0.05], TTFT_BUCKETS)
    assert value(found, f"{ttft}_sum", **OK) == pytest.approx(0.05)
    usage = "gen_ai_client_token_usage"
    assert buckets(found, usage, TOKEN_BUCKETS, **OK, gen_ai_token_type="input") == \
        cumulative([100, 1000], TOKEN_BUCKETS)
    assert buckets(found, usage, TOKEN_BUCKETS, **OK, gen_ai_token_type="output") == \
        cumulative([20, 5], TOKEN_BUCKETS)
    assert value(found, f"{usage}_sum", **OK, gen_ai_token_type="input") == 1100
    assert buckets(found, usage, TOKEN_BUCKETS, **mystery, gen_ai_token_type="input")[1] == 1
    assert (f"{ttft}_count", frozenset({**error}.items())) not in found  # no stream, no series


def test_the_scan_is_remembered_while_the_log_is_unchanged(built_log: EventLog,
                                                          collector: EventLogCollector) -> None:
    built_log.flush()  # finish the background rolls: the files stay as they are now
    first = scrape(collector)
    assert scrape(collector) == first and collector.scans == 1
    built_log.write(call(latency_ms=20.0, cost_usd=0.125))  # a live spool segment grows
    again = scrape(collector)
    assert value(again, "devora_llm_calls_total", **OK) == 4
    assert value(again, "devora_llm_cost_usd_total", **OK) == 0.875
    assert scrape(collector) == again and collector.scans == 2
    built_log.flush()  # the spool rolls into Parquet: new files, same rows
    assert scrape(collector) == again and collector.scans == 3


def test_client_metrics_expose_the_same_series_as_the_log(
        tmp_path: Path, make_llm_call: MakeLLMCall) -> None:
    events = [*CALLS, *OTHER_KINDS, *(make_llm_call(i, ttft_ms=10.0 * i) for i in range(40))]
    event_log = EventLog(tmp_path / "events", roll_max_events=16)
    live = ClientMetrics()
    for event in events:
        event_log.write(event)
        live(event)
    exporter = EventLogCollector(event_log.store())
    try:
        from_log, from_client = scrape(exporter), scrape(live)
    finally:
        exporter.close()
        event_log.close()
    assert from_log.keys() == from_client.keys()
    for key, logged in from_log.items():
        assert from_client[key] == pytest.approx(logged), key


def test_budget_gauges_come_from_the_guard(built_log: EventLog) -> None:
    guard = BudgetGuard([Budget(name="daily-cap", limit_usd=10.0)], LocalLedger())
    guard.settle(guard.reserve(CallScope(), 1.0), 2.5)
    labels = {"budget": "daily-cap", "key": "global", "period": "daily"}
    for source in (EventLogCollector(built_log, budget_guard=guard),
                   ClientMetrics(budget_guard=guard)):
        found = scrape(source)
        assert value(found, "devora_budget_used_ratio", **labels) == 0.25
        assert value(found, "devora_budget_spent_usd", **labels) == 2.5
        assert value(found, "devora_budget_limit_usd", **labels) == 10.0


def metric_names(expr: str) -> set[str]:
    """Our metric names in a PromQL expression (label matchers and ``by`` lists dropped)."""
    bare = re.sub(r"\{[^}]*\}|\bby\s*\([^)]*\)", " ", expr)
    return set(re.findall(r"\b(?:devora|gen_ai)_[a-z0-9_]+", bare))


def test_dashboard_asks_only_for_exposed_metrics(built_log: EventLog) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    used = set().union(*map(metric_names, exprs))
    guard = BudgetGuard([Budget(name="cap", limit_usd=1.0)], LocalLedger())
    exporter = EventLogCollector(built_log, budget_guard=guard)
    exposed = {name for name, _ in scrape(exporter)}
    exporter.close()
    assert used and used <= exposed
    base = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used if not m.endswith("_total")}
    assert base | {m for m in used if m.endswith("_total")} <= set(METRIC_NAMES)


# -- the observer hook on the client --------------------------------------------------------

KEY = "sk-test-SECRET-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Hi"}]


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3}})


def _options(tmp_path: Path, observers: list[Any]) -> dict[str, Any]:
    router = Router({"openai": ProviderConfig("openai", "http://openai.test/v1",
                                              "OPENAI_API_KEY")}, env={"OPENAI_API_KEY": KEY})
    return {"event_log": EventLog(tmp_path / "events"), "router": router,
            "observers": observers}


def _broken(event: Event) -> None:
    raise RuntimeError("observer bug")


def test_client_observers_see_every_event_and_a_failing_one_is_only_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Event] = []
    metrics = ClientMetrics()
    options = _options(tmp_path, [_broken, seen.append, metrics])
    with (Client(transport=httpx.MockTransport(_answer), **options) as client,
          caplog.at_level(logging.WARNING, logger="devora_lab.llm")):
        result = client.complete(MESSAGES, model="gpt-4o", tags=Tags(agent="coder"))
    assert result.text == "Hello"
    assert [e.kind for e in seen] == [EventKind.LLM_ATTEMPT, EventKind.LLM_CALL]
    assert seen[1].request_id == result.request_id and seen[1].cost_usd == result.cost_usd
    assert "event observer" in caplog.text and "observer bug" in caplog.text
    assert KEY not in caplog.text
    found = scrape(metrics)
    assert value(found, "devora_llm_calls_total", **OK) == 1
    assert value(found, "devora_llm_tokens_total", **OK, type="input") == 12
    with options["event_log"].store() as store:
        assert store.count() == 2  # the log got both events before the observers ran


def test_async_client_observers_too(tmp_path: Path) -> None:
    seen: list[Event] = []

    async def run() -> str:
        async with AsyncClient(transport=httpx.MockTransport(_answer),
                               **_options(tmp_path, [_broken, seen.append])) as client:
            return (await client.complete(MESSAGES, model="gpt-4o")).text

    assert asyncio.run(run()) == "Hello"
    assert [e.kind for e in seen] == [EventKind.LLM_ATTEMPT, EventKind.LLM_CALL]
