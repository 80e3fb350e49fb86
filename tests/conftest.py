"""Shared fixtures: a small event log in a temporary folder and realistic events for it, and
a real redis-server on a free loopback port.

Redis tests run against the real server, never a fake, because what matters (PX expiry,
SCAN patterns, Lua atomicity, what happens when the server dies) is the server's
behaviour. When ``redis-server`` or the ``redis`` package is missing they are skipped with
the reason; ``scripts/setup.sh`` installs the server where it can.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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


# -- a real redis-server ---------------------------------------------------------------

_NO_SERVER = ("redis-server is not installed: run scripts/setup.sh as root or with sudo, "
              "or `sudo apt-get install redis-server`, to run the Redis tests")


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running redis-server subprocess and its URL."""

    process: subprocess.Popen[bytes]
    url: str

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _start_once() -> RedisServer | None:
    """A server on a fresh port, or None if it exited (e.g. the port was taken)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if _answers_ping(url):
            return RedisServer(process, url)
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    return None


@contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A redis-server for the duration of the block; skips the test if there is none."""
    if shutil.which("redis-server") is None:
        pytest.skip(_NO_SERVER)
    pytest.importorskip("redis", reason="the redis package is not installed (pip install redis)")
    for _ in range(3):  # the free port may be taken between probing and binding
        server = _start_once()
        if server is not None:
            break
    else:
        pytest.fail("redis-server did not start answering PING within 10 s")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server shared by the session (no persistence, loopback only)."""
    with running_redis() as server:
        yield server.url


@pytest.fixture
def redis_server_factory() -> Callable[[], AbstractContextManager[RedisServer]]:
    """Starts a separate server, for tests that kill it."""
    return running_redis


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test alone, so tests sharing the server never meet."""
    return f"test-{uuid.uuid4().hex[:12]}:"
