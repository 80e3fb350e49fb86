"""Logging LLM calls made elsewhere: turn a provider's response into an ``llm.call`` event.

For agent code that keeps its own SDK calls (the official ``openai`` or ``anthropic``
clients, or raw HTTP) and only wants the calls counted, priced and analysed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from devora_lab.errors import EventSchemaError
from devora_lab.events.schema import Event, EventKind

if TYPE_CHECKING:
    from devora_lab.events import EventLog
    from devora_lab.llm.driver import Tags
    from devora_lab.llm.pricing import PriceBook

__all__ = ["record_completion"]


def _as_dict(response: Any) -> dict[str, Any]:
    if isinstance(response, Mapping):
        return dict(response)
    dump = getattr(response, "model_dump", None)  # the official SDKs' pydantic models
    if callable(dump):
        result = dump()
        if isinstance(result, dict):
            return result
    raise EventSchemaError(
        f"cannot read a {type(response).__name__} as an LLM response",
        fix="pass the SDK's response object or its dict (response.model_dump())")


def record_completion(log: EventLog, response: Any, *, provider: str,
                      requested_model: str | None = None, latency_ms: float | None = None,
                      tags: Tags | None = None, price_book: PriceBook | None = None) -> Event:
    """Write one ``llm.call`` event for a response from the OpenAI or Anthropic format.

    Usage is normalised as the client does (cached tokens are part of input tokens) and the
    cost comes from the price book; an unknown model is logged unpriced, never as $0.
    """
    from devora_lab.llm.pricing import PriceBook
    from devora_lab.llm.providers.anthropic import usage_from_anthropic
    from devora_lab.llm.providers.openai import usage_from_openai

    body = _as_dict(response)
    anthropic = body.get("type") == "message" or "stop_reason" in body
    usage = (usage_from_anthropic if anthropic else usage_from_openai)(body.get("usage"))
    model = str(body.get("model") or requested_model or "")
    book = price_book if price_book is not None else PriceBook.default()
    cost = book.cost(model, usage.input_tokens, usage.output_tokens,
                     usage.cached_input_tokens, usage.cache_creation_input_tokens)
    event = Event(kind=EventKind.LLM_CALL, provider=provider, operation="chat",
                  request_model=requested_model or model, response_model=model,
                  response_id=body.get("id"), input_tokens=usage.input_tokens,
                  output_tokens=usage.output_tokens,
                  cached_input_tokens=usage.cached_input_tokens,
                  cache_creation_input_tokens=usage.cache_creation_input_tokens,
                  cost_usd=cost, cost_status="unpriced" if cost is None else "priced",
                  price_book_version=book.version, latency_ms=latency_ms, status="ok",
                  attempt=1)
    if tags is not None:
        for name in ("user_id", "session_id", "agent", "experiment", "variant",
                     "template_name", "template_version", "trace_id"):
            value = getattr(tags, name)
            if value is not None:
                setattr(event, name, value)
        event.attributes.update(tags.attributes)
    event.attributes["recorded"] = True  # made outside the devora_lab client
    log.write(event)
    return event
