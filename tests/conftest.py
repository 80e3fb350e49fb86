"""Shared fixtures: a small event log in a temporary folder and realistic events for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import settings

from devora_lab.events import Event, EventKind, EventLog

_MODELS = ("gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "llama-3.1-70b")
_PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-sonnet-4": "anthropic",
              "llama-3.1-70b": "openrouter"}


class MakeLLMCall(Protocol):
    """Builds one realistic ``llm.call`` event; keyword arguments override any column."""

    def __call__(self, i: int = 0, /, **overrides: Any) -> Event: ...


def llm_call(i: int = 0, /, **overrides: Any) -> Event:
    """A realistic ``llm.call`` event, varied by ``i`` (costs are exact binary fractions)."""
    model = _MODELS[i % len(_MODELS)]
    failed = i % 7 == 3
    fields: dict[str, Any] = {
        "kind": EventKind.LLM_CALL,
        "ts": datetime.now(timezone.utc),
        "started_at": datetime.now(timezone.utc) - timedelta(milliseconds=400 + i % 50),
        "request_id": f"req-{i}",
        "trace_id": f"trace-{i // 10}",
        "user_id": f"user-{i % 13}",
        "session_id": f"session-{i % 5}",
        "agent": "coder" if i % 2 else "planner",
        "operation": "chat",
        "provider": _PROVIDERS[model],
        "request_model": model,
        "response_model": model,
        "input_tokens": 100 + i,
        "output_tokens": 10 + i % 90,
        "cached_input_tokens": i % 3 * 32,
        "temperature": 0.25 * (i % 4),
        "streamed": i % 2 == 0,
        "cost_usd": (i % 16) / 1024,
        "cost_status": "priced",
        "price_book_version": "2026-11-01",
        "latency_ms": 400.0 + i % 50,
        "status": "error" if failed else "ok",
        "error_type": "RateLimitError" if failed else None,
        "http_status": 429 if failed else 200,
        "attempt": 1,
        "fallback_index": 0,
        "prompt_hash": f"{i:064x}",
        "attributes": {"tool_calls": i % 3, "tags": ["eval", f"batch-{i // 100}"]},
    }
    fields.update(overrides)
    return Event(**{name: value for name, value in fields.items() if value is not None})


@pytest.fixture
def make_llm_call() -> MakeLLMCall:
    """Factory for realistic ``llm.call`` events: ``make_llm_call(i, **overrides)``."""
    return llm_call


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    """Where the ``log`` fixture keeps its files."""
    return tmp_path / "events"


@pytest.fixture
def log(log_root: Path) -> Iterator[EventLog]:
    """An event log that rolls every 50 events (never by age during a test)."""
    event_log = EventLog(log_root, roll_max_events=50, roll_max_seconds=3600)
    yield event_log
    event_log.close()


# CI runs the same examples every time (a red CI must mean a change broke something);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
