"""The price book: shipped prices, cost arithmetic, unknown models and malformed books."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devora_lab.llm.pricing import ModelPrice, PriceBook

BOOK = PriceBook.default()

# model: (input, cached input, cache write, output) in $ per 1M tokens, from the brief.
EXPECTED = {
    "gpt-4o": (2.50, 1.25, None, 10.00),
    "gpt-4o-mini": (0.15, 0.075, None, 0.60),
    "claude-3-5-sonnet-20241022": (3.00, 0.30, 3.75, 15.00),
    "claude-3-opus-20240229": (15.00, 1.50, 18.75, 75.00),
    "claude-3-haiku-20240307": (0.25, 0.03, 0.30, 1.25),
    "gemini-1.5-pro": (1.25, None, None, 5.00),
    "text-embedding-3-small": (0.02, None, None, 0.0),
    "text-embedding-3-large": (0.13, None, None, 0.0),
}


@pytest.mark.parametrize(("model", "rates"), EXPECTED.items())
def test_shipped_prices(model: str, rates: tuple[float, float | None, float | None, float]) -> None:
    price = BOOK.price(model)
    assert price is not None
    assert (price.input, price.cached_input, price.cache_write, price.output) == rates
    assert price.source is not None and price.source.startswith("https://")
    assert isinstance(price.effective_date, date)


def test_book_has_a_version_and_iterates() -> None:
    assert BOOK.version
    assert set(EXPECTED) <= set(BOOK.models)
    assert len(BOOK) == len(list(BOOK)) == len(BOOK.models)
    assert "gpt-4o" in BOOK and "local-llama" not in BOOK
    assert PriceBook.default() is BOOK
    assert "PriceBook(version=" in repr(BOOK)


def test_per_million_arithmetic() -> None:
    assert BOOK.cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert BOOK.cost("gpt-4o-mini", 2_000_000, 500_000) == pytest.approx(0.6)
    assert BOOK.cost("text-embedding-3-small", 1_000_000, 0) == pytest.approx(0.02)


def test_cached_tokens_are_part_of_input_and_charged_once() -> None:
    cost = BOOK.cost("gpt-4o", 1000, 0, cached_input_tokens=400)
    assert cost == pytest.approx((600 * 2.50 + 400 * 1.25) / 1e6)
    all_cached = BOOK.cost("gpt-4o", 1000, 0, cached_input_tokens=1000)
    assert all_cached == pytest.approx(1000 * 1.25 / 1e6)


def test_anthropic_cache_reads_and_writes() -> None:
    cost = BOOK.cost("claude-3-5-sonnet-20241022", 1000, 100, cached_input_tokens=200,
                     cache_creation_input_tokens=300)
    assert cost == pytest.approx((500 * 3.00 + 200 * 0.30 + 300 * 3.75 + 100 * 15.00) / 1e6)


def test_openai_has_no_write_surcharge() -> None:
    plain = BOOK.cost("gpt-4o", 1000, 0)
    assert BOOK.cost("gpt-4o", 1000, 0, cache_creation_input_tokens=1000) == plain


def test_gemini_long_context_rates_apply_to_the_whole_request() -> None:
    short = BOOK.cost("gemini-1.5-pro", 128_000, 1000)
    long = BOOK.cost("gemini-1.5-pro", 128_001, 1000)
    assert short == pytest.approx((128_000 * 1.25 + 1000 * 5.00) / 1e6)
    assert long == pytest.approx((128_001 * 2.50 + 1000 * 10.00) / 1e6)


def test_unknown_model_is_unpriced_not_free() -> None:
    assert BOOK.price("local-llama") is None
    assert BOOK.cost("local-llama", 1000, 1000) is None


def test_aliases_resolve_to_the_same_price() -> None:
    assert BOOK.price("gpt-4o-2024-08-06") is BOOK.price("gpt-4o")
    assert BOOK.cost("gpt-4o-mini-2024-07-18", 10, 10) == BOOK.cost("gpt-4o-mini", 10, 10)


@pytest.mark.parametrize(("tokens", "message"), [
    ((-1, 0, 0, 0), "input_tokens must not be negative"),
    ((10, -1, 0, 0), "output_tokens must not be negative"),
    ((10, 0, 8, 3), "exceed input_tokens"),
])
def test_impossible_token_counts_are_refused(tokens: tuple[int, int, int, int],
                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BOOK.cost("claude-3-5-sonnet-20241022", *tokens)


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "book.json"
    path.write_text(json.dumps(data))
    return path


def test_load_a_custom_book(tmp_path: Path) -> None:
    path = _write(tmp_path, {"version": "test-1", "models": {
        "my-model": {"provider": "me", "input": 1.0, "output": 2.0, "aliases": ["mine"],
                     "effective_date": "2025-01-01", "source": "https://example.com"}}})
    book = PriceBook.load(path)
    assert book.version == "test-1"
    assert book.cost("mine", 1_000_000, 1_000_000, cached_input_tokens=500_000) == 3.0
    assert book.price("gpt-4o") is None


@pytest.mark.parametrize("data", [
    {"models": {}},
    {"version": "x", "models": {"m": {"input": 1.0}}},
    {"version": "x", "models": {"m": {"input": -1.0, "output": 1.0}}},
    {"version": "x", "models": {"a": {"input": 1, "output": 1, "aliases": ["b"]},
                                "b": {"input": 1, "output": 1}}},
])
def test_malformed_books_are_refused(tmp_path: Path, data: object) -> None:
    with pytest.raises(ValueError, match="malformed price book"):
        PriceBook.load(_write(tmp_path, data))


counts = st.integers(min_value=0, max_value=2_000_000)


@given(model=st.sampled_from(sorted(EXPECTED)), uncached=counts, cached=counts, written=counts,
       output=counts)
def test_cost_is_the_sum_of_its_parts(model: str, uncached: int, cached: int, written: int,
                                      output: int) -> None:
    """Linear in each part, and moving tokens into the cache never raises the bill."""
    price = BOOK.price(model)
    assert isinstance(price, ModelPrice)
    total = uncached + cached + written
    cost = price.cost(total, output, cached, written)
    parts = (price.cost(uncached, 0) + price.cost(cached, 0, cached)
             + price.cost(written, 0, 0, written) + price.cost(0, output))
    if price.long_context_threshold is None or total <= price.long_context_threshold:
        assert cost == pytest.approx(parts, rel=1e-9, abs=1e-12)
    assert price.cost(total, output, cached) <= price.cost(total, output) + 1e-12
    assert cost >= 0
