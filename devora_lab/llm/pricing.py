"""Prices of LLM and embedding models, and the cost of one call.

Costs are computed when an event is written, with the price book current then, and the
book's ``version`` is logged next to each cost so that a later price change never silently
rewrites history. A model the book does not know has *no* cost (``None``, logged as
``cost_status = "unpriced"``), never $0: a $0 would make an unknown model look free in
every spend report.

Token accounting follows the providers' usage objects as the event schema stores them:
``input_tokens`` counts *all* input tokens, and the ``cached_input_tokens`` (prompt-cache
reads) and ``cache_creation_input_tokens`` (prompt-cache writes) are parts of it. Each part
is charged once at its own rate; the rest of the input at the input rate.

>>> book = PriceBook.default()
>>> round(book.cost("gpt-4o", 1_000_000, 0, cached_input_tokens=400_000), 4)
2.0
>>> book.cost("local-llama", 1000, 1000) is None
True
"""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from devora_lab.errors import PriceBookError

__all__ = ["ModelPrice", "PriceBook"]

_PER: Final = 1_000_000.0
_SHIPPED: Final = "pricebook.json"


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's rates in US dollars per million tokens, and where they come from.

    ``cached_input``/``cache_write`` are ``None`` where the provider has no separate rate;
    those tokens then cost the input rate. The ``*_long`` rates, when set, replace the
    normal ones for a whole request whose input exceeds ``long_context_threshold``.
    """

    model: str
    provider: str
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    long_context_threshold: int | None = None
    input_long: float | None = None
    output_long: float | None = None
    effective_date: date | None = None
    source: str | None = None
    aliases: tuple[str, ...] = ()
    context_window: int | None = None

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
             cache_creation_input_tokens: int = 0) -> float:
        """Dollars for one call with these token counts (see the module doc for the rules)."""
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens),
                            ("cached_input_tokens", cached_input_tokens),
                            ("cache_creation_input_tokens", cache_creation_input_tokens)):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        if cached_input_tokens + cache_creation_input_tokens > input_tokens:
            raise ValueError(
                f"cached ({cached_input_tokens}) plus cache-creation "
                f"({cache_creation_input_tokens}) tokens exceed input_tokens ({input_tokens}); "
                "they are parts of input_tokens, not additions to it"
            )
        input_rate, output_rate = self.input, self.output
        threshold = self.long_context_threshold
        if threshold is not None and input_tokens > threshold:
            input_rate = self.input_long if self.input_long is not None else input_rate
            output_rate = self.output_long if self.output_long is not None else output_rate
        cached_rate = self.cached_input if self.cached_input is not None else input_rate
        write_rate = self.cache_write if self.cache_write is not None else input_rate
        uncached = input_tokens - cached_input_tokens - cache_creation_input_tokens
        return (uncached * input_rate + cached_input_tokens * cached_rate
                + cache_creation_input_tokens * write_rate + output_tokens * output_rate) / _PER


class PriceBook:
    """A versioned table of model prices, looked up by model name or alias and date.

    Each model has its current rates and, optionally, a ``history`` of earlier rate sets
    with the date each took effect, so that history can be re-priced at the rates of its day.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        try:
            self.version: str = str(data["version"])
            models: Mapping[str, Mapping[str, Any]] = data["models"]
            self._history = {name: _parse_all(name, entry) for name, entry in models.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PriceBookError(f"malformed price book: {exc!r}",
                                 fix="compare it with devora_lab/llm/pricebook.json") from exc
        self._prices = {name: rates[-1] for name, rates in self._history.items()}
        self._lookup: dict[str, str] = {}
        for price in self._prices.values():
            for name in (price.model, *price.aliases):
                if name in self._lookup:
                    raise PriceBookError(f"malformed price book: {name!r} is listed twice",
                                         fix="keep one entry per model or alias")
                self._lookup[name] = price.model

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriceBook:
        """The price book in ``path`` (ours or LiteLLM's format), or the shipped one."""
        if path is None:
            text = importlib.resources.files(__package__ or "devora_lab.llm").joinpath(
                _SHIPPED).read_text(encoding="utf-8")
        else:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceBookError(f"cannot read the price book {path}: {exc.strerror}",
                                     fix="check the path") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PriceBookError(f"price book {path} is not JSON: {exc}",
                                 fix="fix the syntax at the position shown") from exc
        if isinstance(data, Mapping) and "models" not in data and _looks_like_litellm(data):
            return cls.from_litellm(data, version=f"litellm:{Path(str(path)).name}")
        return cls(data)

    @staticmethod
    @cache
    def default() -> PriceBook:
        """The shipped price book, loaded once per process."""
        return PriceBook.load()

    @classmethod
    def from_litellm(cls, data: Mapping[str, Any], *, version: str = "litellm") -> PriceBook:
        """A price book from LiteLLM's ``model_prices_and_context_window.json`` mapping.

        LiteLLM gives dollars per token; we keep dollars per million tokens. Entries without
        both an input and an output price (images, audio, the ``sample_spec``) are skipped.
        """
        models: dict[str, dict[str, Any]] = {}
        for name, entry in data.items():
            if not isinstance(entry, Mapping) or name == "sample_spec":
                continue
            rates = {ours: entry.get(theirs) for ours, theirs in _LITELLM_KEYS.items()}
            if not isinstance(rates["input"], int | float) or not isinstance(
                    rates["output"], int | float):
                continue
            converted = {k: None if v is None else float(v) * _PER for k, v in rates.items()}
            window = entry.get("max_input_tokens") or entry.get("max_tokens")
            models[name] = {**converted, "provider": entry.get("litellm_provider", ""),
                            "context_window": int(window) if window else None,
                            "source": "LiteLLM model_prices_and_context_window.json"}
        return cls({"version": version, "models": models})

    def with_overrides(self, overrides: PriceBook | Mapping[str, Any]) -> PriceBook:
        """This book with the models of ``overrides`` replacing or adding entries.

        The version names both, so an event records that its price came from an override.
        """
        other = overrides if isinstance(overrides, PriceBook) else PriceBook(overrides)
        merged = {name: rates for name, rates in self._history.items()
                  if name not in other._history}
        merged.update(other._history)
        book = object.__new__(PriceBook)
        book.version = f"{self.version}+{other.version}"
        book._history = merged
        book._prices = {name: rates[-1] for name, rates in merged.items()}
        book._lookup = {}
        for price in book._prices.values():
            for name in (price.model, *price.aliases):
                book._lookup[name] = price.model
        return book

    def price(self, model: str, at: date | datetime | None = None) -> ModelPrice | None:
        """The model's prices (in force on ``at``, default today), or ``None`` if unknown."""
        name = self._lookup.get(model)
        if name is None:
            return None
        if at is None:
            return self._prices[name]
        day = at.date() if isinstance(at, datetime) else at
        rates = self._history[name]
        for price in reversed(rates):
            if price.effective_date is None or price.effective_date <= day:
                return price
        return rates[0]

    def cost(self, model: str, input_tokens: int, output_tokens: int,
             cached_input_tokens: int = 0, cache_creation_input_tokens: int = 0,
             at: date | datetime | None = None) -> float | None:
        """Dollars for one call, or ``None`` for an unknown model (unpriced, never $0)."""
        price = self.price(model, at)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cached_input_tokens,
                          cache_creation_input_tokens)

    def context_window(self, model: str) -> int | None:
        """The model's context window in tokens, when the book knows it."""
        price = self.price(model)
        return None if price is None else price.context_window

    @property
    def models(self) -> tuple[str, ...]:
        """Canonical names of the models in the book (aliases not repeated)."""
        return tuple(self._prices)

    def __contains__(self, model: object) -> bool:
        return model in self._lookup

    def __iter__(self) -> Iterator[ModelPrice]:
        return iter(self._prices.values())

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceBook(version={self.version!r}, models={len(self)})"


_LITELLM_KEYS: Final = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
}


def _looks_like_litellm(data: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) and "input_cost_per_token" in v for v in data.values())


def _parse_all(name: str, entry: Mapping[str, Any]) -> list[ModelPrice]:
    current = _parse(name, entry)
    older = [_parse(name, {**entry, **rates, "history": None})
             for rates in entry.get("history") or ()]
    rates = [*older, current]
    if any(p.effective_date is None for p in older):
        raise ValueError(f"{name}: every history entry needs an effective_date")
    return sorted(rates, key=lambda p: p.effective_date or date.min)


def _rate(entry: Mapping[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    rate = float(value)
    if rate < 0:
        raise ValueError(f"{key} is negative")
    return rate


def _parse(name: str, entry: Mapping[str, Any]) -> ModelPrice:
    input_rate, output_rate = _rate(entry, "input"), _rate(entry, "output")
    if input_rate is None or output_rate is None:
        raise ValueError(f"{name} needs both an input and an output rate")
    threshold = entry.get("long_context_threshold")
    effective = entry.get("effective_date")
    return ModelPrice(
        model=name,
        provider=str(entry.get("provider", "")),
        input=input_rate,
        output=output_rate,
        cached_input=_rate(entry, "cached_input"),
        cache_write=_rate(entry, "cache_write"),
        long_context_threshold=int(threshold) if threshold is not None else None,
        input_long=_rate(entry, "input_long"),
        output_long=_rate(entry, "output_long"),
        effective_date=date.fromisoformat(effective) if effective else None,
        source=entry.get("source"),
        aliases=tuple(entry.get("aliases", ())),
        context_window=int(entry["context_window"]) if entry.get("context_window") else None,
    )
