"""Retry, fallback and cooldown decisions, as logic without I/O.

``Client`` and ``AsyncClient`` share these: they only differ in how they wait and send, so
every branch here is tested once, without sockets or clocks (the clock is injected).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final

from devora_lab.errors import (
    AuthenticationError,
    BadRequestError,
    ContextWindowError,
    ProviderError,
    ProviderOverloadedError,
    ProviderTimeoutError,
    RateLimitError,
)

__all__ = [
    "CircuitBreaker",
    "FallbackPolicy",
    "RetryDecision",
    "RetryPolicy",
    "error_for_status",
    "parse_retry_after",
]

_RETRYABLE_4XX: Final = frozenset({408, 409, 429})
_CONTEXT_MARKERS: Final = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "prompt is too long",
    "too many tokens",
)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait as the provider asked: ``retry-after-ms``, else ``retry-after``.

    ``retry-after`` may be seconds or an HTTP date. Unparsable or negative values are ignored.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def _should_retry_header(headers: Mapping[str, str]) -> bool | None:
    for key, value in headers.items():
        if key.lower() == "x-should-retry":
            return value.strip().lower() == "true"
    return None


def error_for_status(
    status: int,
    message: str,
    headers: Mapping[str, str],
    *,
    provider: str,
    model: str,
) -> ProviderError:
    """The typed error for an HTTP error answer, with retryability and Retry-After."""
    kind, fix = _classify(status, message, provider)
    error = kind(
        f"{provider} answered {status} for model {model}: {message}",
        fix=fix,
        provider=provider,
        model=model,
        status=status,
        retry_after=parse_retry_after(headers),
    )
    forced = _should_retry_header(headers)
    if forced is not None:
        error.retryable = forced
    return error


def _classify(status: int, message: str, provider: str) -> tuple[type[ProviderError], str]:
    if status == 429:
        return RateLimitError, "slow down or raise your rate limit"
    if status in (401, 403):
        return AuthenticationError, f"check the API key for {provider} in the environment"
    if status == 408:
        return ProviderTimeoutError, "retried automatically"
    if status >= 500 or status in _RETRYABLE_4XX:
        return ProviderOverloadedError, "retried automatically; configure a fallback model"
    if any(marker in message.lower() for marker in _CONTEXT_MARKERS):
        return ContextWindowError, "shorten the prompt or fall back to a larger-context model"
    return BadRequestError, "fix the request; it is not retried"


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to try again, after how long, and why."""

    retry: bool
    delay: float
    reason: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the provider's Retry-After.

    ``max_attempts`` counts the first try. ``deadline`` bounds the whole call in seconds:
    no retry starts whose wait would end past it. ``max_retry_after`` caps how long a
    provider's Retry-After may make us wait; a longer one is treated as "give up here" so
    the fallback chain can move on.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    multiplier: float = 2.0
    max_retry_after: float = 60.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        from devora_lab.errors import ConfigError

        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1", fix="use 1 for no retries")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigError("backoff bounds are inverted or negative",
                              fix="use 0 <= initial_backoff <= max_backoff")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff before attempt ``attempt + 1``."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return rng.uniform(0.0, ceiling)

    def decide(self, error: ProviderError, attempt: int, elapsed: float,
               rng: random.Random) -> RetryDecision:
        """What to do after ``attempt`` (1-based) failed with ``error``, ``elapsed`` s in."""
        if not error.retryable:
            return RetryDecision(False, 0.0, "not retryable")
        if attempt >= self.max_attempts:
            return RetryDecision(False, 0.0, "attempts exhausted")
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return RetryDecision(False, 0.0, "retry-after beyond cap")
            delay = error.retry_after
        else:
            delay = self.backoff(attempt, rng)
        if self.deadline is not None and elapsed + delay >= self.deadline:
            return RetryDecision(False, 0.0, "deadline")
        return RetryDecision(True, delay, "retry")


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """When to move from one model of the chain to the next."""

    on_exhausted_retries: bool = True
    on_non_retryable: bool = False
    on_context_window: bool = True
    on_stream_before_first_token: bool = True

    def should_fall_back(self, error: ProviderError) -> bool:
        if isinstance(error, ContextWindowError):
            return self.on_context_window
        if isinstance(error, AuthenticationError | BadRequestError):
            return self.on_non_retryable
        return self.on_exhausted_retries if error.retryable else self.on_non_retryable


@dataclass
class CircuitBreaker:
    """Skips a deployment for ``cooldown`` seconds after ``threshold`` failed calls in a row.

    A failed call is one whose retries were exhausted. After the cooldown one call is let
    through (half-open); its success closes the circuit, its failure opens it again.
    """

    threshold: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic)
    _failures: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, float] = field(default_factory=dict)

    def allows(self, deployment: str) -> bool:
        until = self._open_until.get(deployment)
        return until is None or self.clock() >= until

    def record_success(self, deployment: str) -> None:
        self._failures.pop(deployment, None)
        self._open_until.pop(deployment, None)

    def record_failure(self, deployment: str) -> None:
        failures = self._failures.get(deployment, 0) + 1
        self._failures[deployment] = failures
        if failures >= self.threshold:
            self._open_until[deployment] = self.clock() + self.cooldown

    def open_deployments(self) -> list[str]:
        now = self.clock()
        return sorted(name for name, until in self._open_until.items() if until > now)
