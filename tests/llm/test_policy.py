"""Retry, fallback and cooldown decisions, without sockets or clocks."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devora_lab.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ContextWindowError,
    ProviderConnectionError,
    ProviderOverloadedError,
    ProviderTimeoutError,
    RateLimitError,
)
from devora_lab.llm.policy import (
    CircuitBreaker,
    FallbackPolicy,
    RetryPolicy,
    error_for_status,
    parse_retry_after,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def _error(status: int, message: str = "boom", **headers: str):  # type: ignore[no-untyped-def]
    return error_for_status(status, message, headers, provider="openai", model="gpt-4o")


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (429, RateLimitError, True),
        (408, ProviderTimeoutError, True),
        (409, ProviderOverloadedError, True),
        (500, ProviderOverloadedError, True),
        (502, ProviderOverloadedError, True),
        (503, ProviderOverloadedError, True),
        (529, ProviderOverloadedError, True),
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (400, BadRequestError, False),
        (404, BadRequestError, False),
        (422, BadRequestError, False),
    ],
)
def test_status_classification(status: int, kind: type, retryable: bool) -> None:
    error = _error(status)
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status == status and error.provider == "openai" and error.model == "gpt-4o"


def test_context_overflow_is_recognised_from_both_providers() -> None:
    openai = _error(400, "This model's maximum context length is 128000 tokens")
    anthropic = _error(400, "prompt is too long: 210000 tokens > 200000 maximum")
    assert isinstance(openai, ContextWindowError) and isinstance(anthropic, ContextWindowError)


def test_x_should_retry_header_overrides_the_status() -> None:
    assert _error(400, **{"x-should-retry": "true"}).retryable is True
    assert _error(503, **{"X-Should-Retry": "false"}).retryable is False


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "100", "retry-after": "9"}) == 0.1
    date = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=NOW) == pytest.approx(7.0)
    past = format_datetime(NOW - timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=NOW) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-4"}) is None
    assert parse_retry_after({}) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after({"retry-after": value, "retry-after-ms": value}, now=NOW)
    assert result is None or result >= 0


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, max_attempts=10)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 4.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(300)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # jitter spreads over the whole range


def test_retry_decisions() -> None:
    policy = RetryPolicy(max_attempts=3, max_retry_after=10.0, deadline=30.0)
    rng = random.Random(0)
    retry = policy.decide(_error(503), attempt=1, elapsed=0.0, rng=rng)
    assert retry.retry and 0 <= retry.delay <= 0.5
    assert not policy.decide(_error(503), attempt=3, elapsed=0.0, rng=rng).retry
    assert not policy.decide(_error(400), attempt=1, elapsed=0.0, rng=rng).retry
    honoured = policy.decide(_error(429, **{"retry-after": "2"}), attempt=1, elapsed=0.0, rng=rng)
    assert honoured.retry and honoured.delay == 2.0
    too_long = policy.decide(_error(429, **{"retry-after": "60"}), attempt=1, elapsed=0, rng=rng)
    assert not too_long.retry and too_long.reason == "retry-after beyond cap"
    late = policy.decide(_error(429, **{"retry-after": "5"}), attempt=1, elapsed=27.0, rng=rng)
    assert not late.retry and late.reason == "deadline"
    assert policy.decide(ProviderConnectionError("reset"), 1, 0.0, rng).retry


def test_invalid_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(initial_backoff=5, max_backoff=1)


def test_fallback_policy() -> None:
    default = FallbackPolicy()
    assert default.should_fall_back(_error(503))
    assert default.should_fall_back(_error(400, "maximum context length exceeded"))
    assert not default.should_fall_back(_error(400))
    assert not default.should_fall_back(_error(401))
    strict = FallbackPolicy(on_exhausted_retries=False, on_non_retryable=True,
                            on_context_window=False)
    assert not strict.should_fall_back(_error(503))
    assert strict.should_fall_back(_error(401))
    assert not strict.should_fall_back(_error(400, "maximum context length exceeded"))


def test_circuit_breaker_opens_cools_down_and_closes() -> None:
    now = [100.0]
    breaker = CircuitBreaker(threshold=2, cooldown=30.0, clock=lambda: now[0])
    breaker.record_failure("openai/gpt-4o")
    assert breaker.allows("openai/gpt-4o")
    breaker.record_failure("openai/gpt-4o")
    assert not breaker.allows("openai/gpt-4o")
    assert breaker.open_deployments() == ["openai/gpt-4o"]
    assert breaker.allows("anthropic/claude-3-haiku-20240307")
    now[0] += 30.0
    assert breaker.allows("openai/gpt-4o")  # half-open: one call goes through
    breaker.record_failure("openai/gpt-4o")
    assert not breaker.allows("openai/gpt-4o")
    now[0] += 31.0
    breaker.record_success("openai/gpt-4o")
    breaker.record_failure("openai/gpt-4o")
    assert breaker.allows("openai/gpt-4o")  # the count restarted after the success
