"""Price history, overrides, LiteLLM's price map, and context windows."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from devora_lab.errors import ConfigError, PriceBookError
from devora_lab.llm.pricing import PriceBook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_history_prices_a_call_at_the_rates_of_its_day() -> None:
    book = PriceBook.default()
    launch = book.cost("gpt-4o", 1_000_000, 1_000_000, at=date(2024, 6, 1))
    today = book.cost("gpt-4o", 1_000_000, 1_000_000)
    assert launch == pytest.approx(5.0 + 15.0)
    assert today == pytest.approx(2.5 + 10.0)
    moment = datetime(2024, 10, 2, 0, 0, tzinfo=timezone.utc)
    assert book.cost("gpt-4o", 1_000_000, 0, at=moment) == pytest.approx(2.5)
    # before any known rate, the oldest set applies rather than "free"
    assert book.cost("gpt-4o", 1_000_000, 0, at=date(2020, 1, 1)) == pytest.approx(5.0)


def test_context_windows_are_known_for_shipped_models() -> None:
    book = PriceBook.default()
    assert book.context_window("gpt-4o") == 128_000
    assert book.context_window("claude-3-5-sonnet-20241022") == 200_000
    assert book.context_window("unknown-model") is None


def test_overrides_replace_and_add_models_and_name_the_version() -> None:
    base = PriceBook.default()
    book = base.with_overrides({"version": "team-2026-11", "models": {
        "gpt-4o": {"input": 2.0, "output": 8.0, "effective_date": "2026-11-01"},
        "local-llama": {"input": 0.0, "output": 0.0, "effective_date": "2026-01-01",
                        "source": "self-hosted, no per-token charge"}}})
    assert book.version == f"{base.version}+team-2026-11"
    assert book.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.0)
    assert book.cost("local-llama", 5000, 5000) == 0.0  # priced at zero on purpose
    assert book.cost("gpt-4o-mini", 1_000_000, 0) == base.cost("gpt-4o-mini", 1_000_000, 0)


def test_litellm_price_map_is_imported_per_million_tokens() -> None:
    book = PriceBook.load(FIXTURES / "litellm_prices.json")
    assert book.version.startswith("litellm:")
    assert set(book.models) == {"gpt-4o", "claude-3-5-haiku-20241022"}
    price = book.price("claude-3-5-haiku-20241022")
    assert price is not None
    assert (price.input, price.output, price.cached_input, price.cache_write) == pytest.approx(
        (0.8, 4.0, 0.08, 1.0))
    assert price.context_window == 200_000
    assert book.cost("gpt-4o", 1_000_000, 0, cached_input_tokens=1_000_000) == pytest.approx(1.25)


def test_bad_price_book_files_are_config_errors(tmp_path: Path) -> None:
    broken = tmp_path / "prices.json"
    broken.write_text("{not json")
    with pytest.raises(PriceBookError, match="not JSON"):
        PriceBook.load(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        PriceBook.load(tmp_path / "missing.json")
    broken.write_text('{"version": "x", "models": {"m": {"input": 1, "output": 1, '
                      '"history": [{"input": 2, "output": 2}]}}}')
    with pytest.raises(PriceBookError, match="effective_date"):
        PriceBook.load(broken)


def test_workspace_price_overrides_reach_the_client(tmp_path: Path) -> None:
    from devora_lab.llm.client import Client

    (tmp_path / "prices.json").write_text(
        '{"version": "ours", "models": {"my-model": {"input": 1.0, "output": 2.0}}}')
    (tmp_path / "devora.toml").write_text('[pricing]\noverrides = "prices.json"\n')
    with Client.from_workspace(tmp_path) as client:
        book = client.settings.price_book
        assert book.version.endswith("+ours")
        assert book.cost("my-model", 1_000_000, 1_000_000) == pytest.approx(3.0)
