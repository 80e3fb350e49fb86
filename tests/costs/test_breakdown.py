"""Breakdowns, re-pricing and recommendations on constructed logs with hand-computed totals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from devora_lab.costs.breakdown import breakdown, top_spenders
from devora_lab.costs.recommend import recommend
from devora_lab.costs.repricing import reprice
from devora_lab.errors import ConfigError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events.store import EventStore
from devora_lab.llm.pricing import PriceBook

BOOK = PriceBook.default()
DAY = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)  # a Monday


def _call(**fields: Any) -> Event:
    base: dict[str, Any] = {"kind": EventKind.LLM_CALL, "ts": DAY, "status": "ok",
                            "request_model": "gpt-4o", "response_model": "gpt-4o",
                            "provider": "openai", "input_tokens": 1000, "output_tokens": 100,
                            "cost_status": "priced"}
    base.update(fields)
    model = base["response_model"]
    if "cost_usd" not in base and base["cost_status"] == "priced":
        base["cost_usd"] = BOOK.cost(model, base["input_tokens"], base["output_tokens"],
                                     base.get("cached_input_tokens", 0))
    return Event(**base)


def _write_all(log: EventLog, events: list[Event]) -> None:
    for event in events:
        log.write(event)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    log = EventLog(tmp_path / "events")
    _write_all(log, [
        _call(user_id="ann", agent="coder", ts=DAY),
        _call(user_id="ann", agent="coder", ts=DAY + timedelta(days=1)),
        _call(user_id="bob", agent="coder", ts=DAY + timedelta(days=8), status="error",
              output_tokens=0),
        _call(user_id="bob", agent="reviewer", request_model="gpt-4o-mini",
              response_model="gpt-4o-mini", ts=DAY + timedelta(days=8)),
        _call(user_id="cy", agent="reviewer", request_model="house-model",
              response_model="house-model", cost_status="unpriced", provider="local"),
        _call(user_id="ann", agent="coder", cache_outcome="hit", cost_usd=0.0),
    ])
    log.close()
    with EventLog(tmp_path / "events").store() as opened:
        yield opened


def test_breakdown_by_model_sums_and_shares(store: EventStore) -> None:
    frame = breakdown(store, ("model",)).set_index("model")
    per_call = BOOK.cost("gpt-4o", 1000, 100)
    errored = BOOK.cost("gpt-4o", 1000, 0)
    assert frame.loc["gpt-4o", "calls"] == 4
    assert frame.loc["gpt-4o", "cost_usd"] == pytest.approx(2 * per_call + errored)
    assert frame.loc["gpt-4o", "errors"] == 1
    # a cache hit is a successful call that cost nothing: it lowers cost per success
    assert frame.loc["gpt-4o", "cost_per_success_usd"] == pytest.approx(
        (2 * per_call + errored) / 3)
    assert frame.loc["house-model", "unpriced_calls"] == 1
    assert frame["share"].sum() == pytest.approx(1.0)


def test_breakdown_by_week_user_and_filters(store: EventStore) -> None:
    weeks = breakdown(store, ("week",)).set_index("week")
    assert sorted(str(w)[:10] for w in weeks.index) == ["2026-11-02", "2026-11-09"]
    bob = breakdown(store, ("agent",), filters={"user": "bob"}).set_index("agent")
    assert set(bob.index) == {"coder", "reviewer"}
    assert breakdown(store, ()).loc[0, "calls"] == 6
    since = breakdown(store, (), since=DAY + timedelta(days=7)).loc[0, "calls"]
    assert since == 2
    with pytest.raises(ConfigError, match="unknown dimension 'colour'"):
        breakdown(store, ("colour",))


def test_top_spenders(store: EventStore) -> None:
    top = top_spenders(store, "user", 2)
    assert list(top["user"]) == ["ann", "bob"]
    assert top.loc[0, "share"] > top.loc[1, "share"]


def test_reprice_with_the_same_book_reproduces_history(store: EventStore) -> None:
    frame = reprice(store, BOOK, by=()).iloc[0]
    assert frame["repriced_cost_usd"] == pytest.approx(frame["recorded_cost_usd"])
    assert frame["still_unpriced_calls"] == 1  # house-model has no price in either


def test_reprice_as_another_model_and_with_corrected_prices(store: EventStore) -> None:
    mini = reprice(store, BOOK, as_model="gpt-4o-mini", by=("agent",)).set_index("agent")
    billed = BOOK.cost("gpt-4o-mini", 1000, 100) * 2 + BOOK.cost("gpt-4o-mini", 1000, 0)
    assert mini.loc["coder", "repriced_cost_usd"] == pytest.approx(billed)  # hit: free
    fixed = BOOK.with_overrides(PriceBook({"version": "fix", "models": {"house-model": {
        "provider": "local", "input": 1.0, "output": 2.0}}}))
    house = reprice(store, fixed).set_index("model").loc["house-model"]
    assert house["repriced_cost_usd"] == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    assert house["still_unpriced_calls"] == 0


def _experiment_log(root: Path, candidate_successes: int) -> EventStore:
    log = EventLog(root)
    events = []
    for i in range(2000):
        control = i % 2 == 0
        model = "gpt-4o" if control else "gpt-4o-mini"
        ok = (i // 2) < 980 if control else (i // 2) < candidate_successes
        events.append(_call(experiment="reviewer-model", variant="a" if control else "b",
                            agent="reviewer", request_model=model, response_model=model,
                            status="ok" if ok else "error", ts=DAY + timedelta(minutes=i)))
    _write_all(log, events)
    log.close()
    return EventLog(root).store()


def test_cheaper_model_only_with_noninferior_evidence(tmp_path: Path) -> None:
    with _experiment_log(tmp_path / "good", 979) as store:
        found = [r for r in recommend(store, BOOK) if r.kind == "cheaper_model"]
    assert len(found) == 1 and "gpt-4o-mini" in found[0].title
    evidence = found[0].evidence
    assert evidence["control_success"] == "980/1000"
    assert evidence["p_value"] < 0.05 and evidence["margin"] == 0.02
    per_call = BOOK.cost("gpt-4o", 1000, 100) - BOOK.cost("gpt-4o-mini", 1000, 100)
    # 2000 calls over 2000 minutes of data (1.39 days), scaled to a 30-day month
    assert found[0].monthly_saving_usd == pytest.approx(per_call * 2000 * 30 / (1999 / 1440),
                                                        rel=0.01)
    with _experiment_log(tmp_path / "worse", 930) as store:
        assert not [r for r in recommend(store, BOOK) if r.kind == "cheaper_model"]


def test_repeats_long_contexts_and_prompt_caching(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    _write_all(log, [
        *(_call(prompt_hash="same", ts=DAY + timedelta(minutes=i)) for i in range(5)),
        _call(input_tokens=50_000, ts=DAY),
        *(_call(template_name="code-review", input_tokens=3000 + i, ts=DAY)
          for i in range(25)),
    ])
    log.close()
    with EventLog(tmp_path / "events").store() as store:
        kinds = {r.kind: r for r in recommend(store, BOOK)}
    assert kinds["response_cache"].evidence["exact_repeats"] == 4
    assert kinds["long_context"].evidence["excess_input_tokens"] == 50_000 - 8_000
    caching = kinds["prompt_caching"]
    assert caching.evidence["shortest_prompt_tokens"] == 3000
    price = BOOK.price("gpt-4o")
    assert price is not None and price.cached_input is not None
    assert caching.monthly_saving_usd == pytest.approx(
        3000 * 25 * (price.input - price.cached_input) / 1e6 * 30, rel=0.01)
