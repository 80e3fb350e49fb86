"""One logical LLM call as a state machine without I/O, shared by Client and AsyncClient.

The clients ask the driver which route to try next, send the request themselves, and report
the outcome; the driver decides retries, waits, fallbacks and cooldowns, writes one
``llm.attempt`` event per HTTP request and one ``llm.call`` event per logical call, and builds
the result. So both clients behave identically by construction, and every decision is
tested without sockets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from devora_lab.errors import (
    AllModelsFailedError,
    ContextWindowError,
    DevoraError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    StreamInterruptedError,
)
from devora_lab.events.schema import Event, EventKind, new_id
from devora_lab.llm.caching import CacheOptions, CallCache
from devora_lab.llm.policy import CircuitBreaker, FallbackPolicy, RetryPolicy
from devora_lab.llm.providers.base import ParsedCompletion, RequestSpec
from devora_lab.llm.redact import redact
from devora_lab.llm.routing import Route, Router
from devora_lab.llm.tokens import count_message_tokens, prompt_bytes
from devora_lab.llm.types import Completion, MessageLike, Usage

if TYPE_CHECKING:
    from devora_lab.cache import ResponseCache
    from devora_lab.cache.entry import CacheEntry
    from devora_lab.events import EventLog
    from devora_lab.llm.pricing import PriceBook

__all__ = ["CallSettings", "CallDriver", "Tags"]

log = logging.getLogger("devora_lab.llm")


@dataclass(frozen=True, slots=True)
class Tags:
    """Who and what a call is for; copied onto every event of the call."""

    user_id: str | None = None
    session_id: str | None = None
    agent: str | None = None
    experiment: str | None = None
    variant: str | None = None
    template_name: str | None = None
    template_version: str | None = None
    trace_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, other: Tags | None) -> Tags:
        """These tags overridden by the non-empty fields of ``other``."""
        if other is None:
            return self
        values = {name: getattr(other, name) or getattr(self, name)
                  for name in ("user_id", "session_id", "agent", "experiment", "variant",
                               "template_name", "template_version", "trace_id")}
        return Tags(**values, attributes={**self.attributes, **other.attributes})


class BudgetHook(Protocol):
    """What the call path needs from budgets (``costs.budgets.BudgetGuard`` is one): hold
    a call's worst-case cost before it is sent (raising ``BudgetExceededError`` to refuse
    it), then settle the hold with the real cost or release it. Kept as a protocol so the
    call path does not import the costs package."""

    def reserve_call(self, *, user_id: str | None, model: str, agent: str | None,
                     tags: Mapping[str, str], max_cost_usd: float) -> object: ...

    def settle(self, hold: Any, actual_cost_usd: float | None) -> object: ...

    def release(self, hold: Any) -> None: ...


@dataclass(frozen=True)
class CallSettings:
    """Everything a driver needs that does not change from call to call."""

    router: Router
    event_log: EventLog | None
    price_book: PriceBook
    retry: RetryPolicy
    fallback: FallbackPolicy
    breaker: CircuitBreaker
    fallbacks: Mapping[str, Sequence[str]]
    content_policy: str = "hashed"
    tags: Tags = Tags()
    cache: ResponseCache | None = None
    budget: BudgetHook | None = None
    clock: Callable[[], float] = time.perf_counter
    rng: random.Random = field(default_factory=random.Random)
    warned_unpriced: set[str] = field(default_factory=set)  # warn once per model per client
    observers: tuple[Callable[[Event], None], ...] = ()  # told of every event after the log


class CallDriver:
    """Drives one logical call across attempts and fallback models."""

    def __init__(self, settings: CallSettings, messages: Sequence[MessageLike], model: str,
                 params: Mapping[str, Any], *, stream: bool, tags: Tags | None = None,
                 fallbacks: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.messages = messages
        self.requested_model = model
        self.params = dict(params)
        cache_options = CacheOptions.pop_from(self.params)
        self.stream = stream
        self.tags = settings.tags.merged(tags)
        chain = fallbacks if fallbacks is not None else settings.fallbacks.get(model, ())
        self.chain = [model, *chain]
        self.request_id = new_id()
        self.started = settings.clock()
        self.attempts = 0
        self.errors: list[ProviderError] = []
        self._index = -1
        self._route: Route | None = None
        self._retry_same = False
        self._model_attempts = 0
        self._last_error: ProviderError | None = None
        self._hold: object | None = None
        self._reserved = False
        first = settings.router.resolve(model)
        self.cache = CallCache(settings.cache, first.adapter.name, first.model, messages,
                               self.params, cache_options)

    # -- the response cache --------------------------------------------------------------

    def cached(self) -> CacheEntry | None:
        """Look the request up; on a hit, record it (cache and call events) and return it."""
        entry = self.cache.lookup(self.request_id)
        if self.cache.outcome is not None:
            self._write(self._cache_event(entry))
        if entry is not None:
            self._write(self._hit_call_event(entry))
        return entry

    def hit(self, entry: CacheEntry) -> Completion:
        """The completion a cache hit returns: free, instant, marked cached."""
        original = entry.completion
        return dataclasses.replace(
            original, requested_model=self.requested_model, cost_usd=0.0,
            cost_status="priced", latency_ms=(self.settings.clock() - self.started) * 1000,
            ttft_ms=None, attempts=0, fallback_index=0, request_id=self.request_id, cached=True)

    def _cache_event(self, entry: CacheEntry | None) -> Event:
        event = self._base_event(EventKind.CACHE, None)
        event.request_model = self.requested_model
        event.cache_outcome = self.cache.outcome
        event.cache_key = self.cache.key.full
        event.name = self.cache.key.namespace
        event.latency_ms = (self.settings.clock() - self.started) * 1000
        if entry is not None:
            event.saved_cost_usd = entry.completion.cost_usd
            event.saved_latency_ms = entry.completion.latency_ms
        if self.cache.match is not None:
            event.value = self.cache.match.similarity
            event.attributes["matched_key"] = self.cache.match.key
        return event

    def _hit_call_event(self, entry: CacheEntry) -> Event:
        original = entry.completion
        event = self._base_event(EventKind.LLM_CALL, None)
        event.provider = original.provider
        event.request_model = self.requested_model
        event.response_model = original.model
        event.input_tokens = original.usage.input_tokens
        event.output_tokens = original.usage.output_tokens
        event.cost_usd = 0.0
        event.cost_status = "priced"
        event.saved_cost_usd = original.cost_usd
        event.saved_latency_ms = original.latency_ms
        event.latency_ms = (self.settings.clock() - self.started) * 1000
        event.status = "ok"
        event.finish_reason = original.finish_reason
        event.attempt = 0
        self._content(event, original.text)
        return event

    # -- what to do next -----------------------------------------------------------------

    # -- budgets ---------------------------------------------------------------------------

    def _worst_case_cost(self) -> float:
        """The most this call can cost on any model of its chain: the whole prompt at the
        input price plus ``max_tokens`` (default 4,096) at the output price. A model
        without a price adds nothing: it cannot be held to a dollar budget."""
        from devora_lab.llm.providers.anthropic import DEFAULT_MAX_TOKENS

        output = int(self.params.get("max_tokens") or self.params.get(
            "max_completion_tokens") or DEFAULT_MAX_TOKENS)
        worst = 0.0
        for name in self.chain:
            model = self.settings.router.resolve(name).model
            cost = self.settings.price_book.cost(
                model, count_message_tokens(self.messages, model), output)
            worst = max(worst, cost or 0.0)
        return worst

    def _reserve_budget(self) -> None:
        """Hold the worst case before the first request goes out (refusal raises)."""
        self._reserved = True
        budget = self.settings.budget
        if budget is None:
            return
        tags = {key: str(value) for key, value in (self.tags.attributes or {}).items()}
        for key in ("experiment", "variant", "template_name"):
            value = getattr(self.tags, key, None)
            if value is not None:
                tags[key] = str(value)
        self._hold = budget.reserve_call(
            user_id=self.tags.user_id, model=self.requested_model, agent=self.tags.agent,
            tags=tags, max_cost_usd=self._worst_case_cost())

    def _settle_budget(self, actual_cost_usd: float | None, *, release: bool = False) -> None:
        budget, hold = self.settings.budget, self._hold
        if budget is None or hold is None:
            return
        self._hold = None
        try:
            if release:
                budget.release(hold)
            else:
                budget.settle(hold, actual_cost_usd)
        except DevoraError:  # the call already happened: never fail it over bookkeeping
            log.warning("could not settle the budget hold of call %s", self.request_id,
                           exc_info=True)

    def next_route(self) -> Route | None:
        """The route to send to now, or None when the chain is exhausted."""
        if not self._reserved:
            self._reserve_budget()
        if self._retry_same and self._route is not None:
            self._retry_same = False
            return self._route
        while self._index + 1 < len(self.chain):
            self._index += 1
            self._model_attempts = 0
            route = self.settings.router.resolve(self.chain[self._index])
            if not self.settings.breaker.allows(route.deployment):
                self._skip(route, "CircuitOpen", "cooling down after repeated failures")
                continue
            too_long = self._context_overflow(route)
            if too_long is not None:
                self._skip(route, "ContextWindowError", too_long.message)
                self.errors.append(too_long)
                if not self.settings.fallback.should_fall_back(too_long):
                    return None
                continue
            self._route = route
            return route
        return None

    def _context_overflow(self, route: Route) -> ContextWindowError | None:
        """A pre-flight check: the error to record if the prompt cannot fit ``route``'s model.

        UTF-8 bytes bound the token count from above (a token is at least one byte), so
        tiktoken runs only when the prompt might not fit.
        """
        window = self.settings.price_book.context_window(route.model)
        if window is None:
            return None
        reserved = int(self.params.get("max_tokens") or self.params.get(
            "max_completion_tokens") or 0)
        if prompt_bytes(self.messages) + reserved <= window:
            return None
        needed = count_message_tokens(self.messages, route.model) + reserved
        if needed <= window:
            return None
        return ContextWindowError(
            f"the prompt needs about {needed:,} tokens (output reserve included) but "
            f"{route.model} holds {window:,}; it was not sent",
            fix="shorten the prompt, lower max_tokens, or add a larger-context fallback model",
            provider=route.adapter.name, model=route.model)

    @property
    def fallback_index(self) -> int:
        return max(self._index, 0)

    def request(self, route: Route) -> RequestSpec:
        return route.adapter.chat_request(self.messages, route.model, self.params,
                                          stream=self.stream)

    def body_bytes(self, spec: RequestSpec) -> bytes:
        return orjson.dumps(spec.body)

    # -- outcomes ------------------------------------------------------------------------

    def succeed(self, route: Route, parsed: ParsedCompletion, attempt_started: float,
                ttft: float | None = None, chunks: tuple[str, ...] = ()) -> Completion:
        """Record a successful attempt and the call; return the completion."""
        now = self.settings.clock()
        self.attempts += 1
        self.settings.breaker.record_success(route.deployment)
        cost, status = self._price(route, parsed)
        attempt_ttft = None if ttft is None else (ttft - attempt_started) * 1000
        self._write(self._attempt_event(route, (now - attempt_started) * 1000, "ok",
                                        parsed=parsed, ttft_ms=attempt_ttft, http_status=200))
        completion = Completion(
            text=parsed.text, model=parsed.model, requested_model=self.requested_model,
            provider=route.adapter.name, usage=parsed.usage, finish_reason=parsed.finish_reason,
            tool_calls=parsed.tool_calls, cost_usd=cost, cost_status=status,
            latency_ms=(now - self.started) * 1000,
            ttft_ms=None if ttft is None else (ttft - self.started) * 1000,
            attempts=self.attempts, fallback_index=self.fallback_index,
            request_id=self.request_id, response_id=parsed.response_id, raw=parsed.raw,
        )
        self._write(self._call_event(route, completion))
        self._settle_budget(cost)  # unpriced (None): the hold stays spent, to be safe
        self.cache.store(completion, chunks)
        return completion

    def fail(self, route: Route, error: ProviderError, attempt_started: float) -> float | None:
        """Record a failed attempt; return seconds to wait before retrying the same route,
        or None to move on down the chain."""
        now = self.settings.clock()
        self.attempts += 1
        self._model_attempts += 1
        self._last_error = error
        self._write(self._attempt_event(route, (now - attempt_started) * 1000, "error",
                                        error=error, http_status=error.status))
        decision = self.settings.retry.decide(error, self._model_attempts, now - self.started,
                                              self.settings.rng)
        if decision.retry:
            self._retry_same = True
            return decision.delay
        self.settings.breaker.record_failure(route.deployment)
        self.errors.append(error)
        if not self.settings.fallback.should_fall_back(error):
            self._index = len(self.chain)  # stop here: the error is not one to fall back on
        return None

    def interrupted(self, route: Route, error: ProviderError, partial: ParsedCompletion,
                    attempt_started: float) -> StreamInterruptedError:
        """A stream broke after text arrived: record it and build the error to raise."""
        self.attempts += 1
        now = self.settings.clock()
        self._write(self._attempt_event(route, (now - attempt_started) * 1000, "error",
                                        error=error, http_status=error.status, parsed=partial))
        interrupted = StreamInterruptedError(
            f"the stream from {route.deployment} broke after {len(partial.text)} characters: "
            f"{error.message}",
            partial_text=partial.text, fix="use the partial text, or call again",
            provider=route.adapter.name, model=route.model, status=error.status,
        )
        self._write(self._failed_call_event(route, interrupted, partial))
        self._settle_budget(None)  # tokens were produced and billed: keep the hold
        return interrupted

    def cancelled(self, route: Route | None, partial: ParsedCompletion | None) -> None:
        """The caller stopped reading a stream before its end."""
        event = self._base_event(EventKind.LLM_CALL, route)
        self._fill_usage(event, partial)
        event.status = "cancelled"
        event.latency_ms = (self.settings.clock() - self.started) * 1000
        self._write(event)
        self._settle_budget(None)

    def give_up(self) -> DevoraError:
        """The error to raise when no model could answer; also records the failed call."""
        if not self.errors and self._last_error is not None:
            self.errors.append(self._last_error)
        if not self.errors:
            error: DevoraError = AllModelsFailedError(
                f"no model of {self.chain} could be tried: all are cooling down",
                errors=[], fix="wait for the cooldown, or add a fallback model")
        elif len(self.errors) == 1:
            error = self.errors[-1]
        else:
            summary = "; ".join(f"{e.model}: {type(e).__name__}" for e in self.errors)
            error = AllModelsFailedError(
                f"every model in the fallback chain failed ({summary})", errors=self.errors,
                fix="see .errors for each model's last error")
        self._write(self._failed_call_event(self._route, error, None))
        self._settle_budget(None, release=True)  # failed attempts are not billed
        return error

    def transport_error(self, route: Route, exc: Exception) -> ProviderError:
        """A typed, redacted error for a failure below HTTP (connect, timeout, reset)."""
        import httpx

        text = redact(f"{type(exc).__name__}: {exc}", self.settings.router.secrets())
        if isinstance(exc, httpx.TimeoutException):
            return ProviderTimeoutError(
                f"{route.deployment} timed out ({text})",
                fix="retried automatically; raise the timeout if the model is slow",
                provider=route.adapter.name, model=route.model)
        return ProviderConnectionError(
            f"connection to {route.deployment} failed ({text})",
            fix="retried automatically; check the base_url",
            provider=route.adapter.name, model=route.model)

    def http_error(self, route: Route, status: int, body: bytes,
                   headers: Mapping[str, str]) -> ProviderError:
        error = route.adapter.error(status, body, headers, route.model)
        return self.scrub(error)

    def scrub(self, error: ProviderError) -> ProviderError:
        """Remove any key from the error's text (a provider may echo it back)."""
        secrets = self.settings.router.secrets()
        error.message = redact(error.message, secrets)
        error.args = (redact(str(error), secrets),)
        return error

    # -- events --------------------------------------------------------------------------

    def _skip(self, route: Route, error_type: str, reason: str) -> None:
        event = self._base_event(EventKind.LLM_ATTEMPT, route)
        event.request_model = route.model
        event.status = "skipped"
        event.error_type = error_type
        event.error_message = reason
        self._write(event)

    def _base_event(self, kind: EventKind, route: Route | None) -> Event:
        tags = self.tags
        event = Event(kind=kind, request_id=self.request_id, operation="chat",
                      streamed=self.stream, fallback_index=self.fallback_index,
                      user_id=tags.user_id, session_id=tags.session_id, agent=tags.agent,
                      experiment=tags.experiment, variant=tags.variant,
                      template_name=tags.template_name, template_version=tags.template_version,
                      trace_id=tags.trace_id)
        if tags.attributes:
            event.attributes = dict(tags.attributes)
        if kind == EventKind.LLM_CALL:
            event.cache_key = self.cache.key.full
            event.cache_outcome = self.cache.outcome
            event.attributes["deterministic"] = self.cache.deterministic
        if route is not None:
            event.provider = route.adapter.name
        temperature = self.params.get("temperature")
        if isinstance(temperature, int | float):
            event.temperature = float(temperature)
        max_tokens = self.params.get("max_tokens") or self.params.get("max_completion_tokens")
        if isinstance(max_tokens, int):
            event.max_tokens = max_tokens
        return event

    def _attempt_event(self, route: Route, latency_ms: float, status: str, *,
                       parsed: ParsedCompletion | None = None, error: ProviderError | None = None,
                       ttft_ms: float | None = None, http_status: int | None = None) -> Event:
        event = self._base_event(EventKind.LLM_ATTEMPT, route)
        event.request_model = route.model
        event.attempt = self.attempts
        event.latency_ms = latency_ms
        event.ttft_ms = ttft_ms
        event.status = status
        event.http_status = http_status
        self._fill_usage(event, parsed)
        if error is not None:
            event.error_type = type(error).__name__
            event.error_message = redact(error.message, self.settings.router.secrets())[:500]
        return event

    def _fill_usage(self, event: Event, parsed: ParsedCompletion | None) -> None:
        if parsed is None:
            return
        event.response_model = parsed.model
        _put_usage(event, parsed.usage)
        event.finish_reason = parsed.finish_reason
        event.response_id = parsed.response_id

    def _call_event(self, route: Route, completion: Completion) -> Event:
        event = self._base_event(EventKind.LLM_CALL, route)
        event.request_model = self.requested_model
        event.response_model = completion.model
        event.response_id = completion.response_id
        _put_usage(event, completion.usage)
        event.cost_usd = completion.cost_usd
        event.cost_status = completion.cost_status
        event.price_book_version = self.settings.price_book.version
        event.latency_ms = completion.latency_ms
        event.ttft_ms = completion.ttft_ms
        event.status = "ok"
        event.finish_reason = completion.finish_reason
        event.attempt = completion.attempts
        self._content(event, completion.text)
        if completion.tool_calls:
            event.attributes["tool_calls"] = [c.name for c in completion.tool_calls]
        if len(self.chain) > 1:
            event.attributes["fallback_chain"] = list(self.chain)
        return event

    def _failed_call_event(self, route: Route | None, error: DevoraError,
                           partial: ParsedCompletion | None) -> Event:
        event = self._base_event(EventKind.LLM_CALL, route)
        event.request_model = self.requested_model
        self._fill_usage(event, partial)
        event.status = "error"
        event.error_type = type(error).__name__
        event.error_message = redact(error.message, self.settings.router.secrets())[:500]
        event.http_status = getattr(error, "status", None)
        event.attempt = self.attempts
        event.latency_ms = (self.settings.clock() - self.started) * 1000
        self._content(event, partial.text if partial else None)
        return event

    def _content(self, event: Event, response: str | None) -> None:
        policy = self.settings.content_policy
        if policy == "none":
            return
        prompt = orjson.dumps(list(self.messages), option=orjson.OPT_SORT_KEYS)
        event.prompt_hash = hashlib.sha256(prompt).hexdigest()
        if response is not None:
            event.response_hash = hashlib.sha256(response.encode()).hexdigest()
        if policy == "full":
            secrets = self.settings.router.secrets()
            event.prompt_text = redact(prompt.decode(), secrets)
            event.response_text = None if response is None else redact(response, secrets)

    def _price(self, route: Route, parsed: ParsedCompletion) -> tuple[float | None, str]:
        book = self.settings.price_book
        usage = parsed.usage
        for name in (parsed.model, route.model):
            if book.price(name) is not None:
                cost = book.cost(name, usage.input_tokens, usage.output_tokens,
                                 cached_input_tokens=usage.cached_input_tokens,
                                 cache_creation_input_tokens=usage.cache_creation_input_tokens)
                return cost, "priced"
        if route.model not in self.settings.warned_unpriced:
            self.settings.warned_unpriced.add(route.model)
            log.warning("model %s is not in the price book (version %s): its calls are logged "
                        "as unpriced, not $0; add it with a price-book override", route.model,
                        book.version)
        return None, "unpriced"

    def _write(self, event: Event) -> None:
        """Log the event, then tell each observer; an observer that fails is logged and
        skipped, since metrics or hooks must never break the call they watch."""
        if self.settings.event_log is not None:
            self.settings.event_log.write(event)
        for observer in self.settings.observers:
            try:
                observer(event)
            except Exception:  # an observer's bug must not fail the call it watches
                log.warning("event observer %r failed on a %s event", observer, event.kind,
                            exc_info=True)


def _put_usage(event: Event, usage: Usage) -> None:
    event.input_tokens = usage.input_tokens
    event.output_tokens = usage.output_tokens
    event.cached_input_tokens = usage.cached_input_tokens
    event.cache_creation_input_tokens = usage.cache_creation_input_tokens
