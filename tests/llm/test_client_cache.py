"""The client with a response cache: hits, bypasses, overrides, stream replay, bad entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devora_lab.cache import CachePolicy, CorruptCacheEntryWarning, ResponseCache
from devora_lab.cache.memory import MemoryCache
from devora_lab.events import EventLog
from devora_lab.llm.client import Client
from devora_lab.llm.policy import RetryPolicy
from devora_lab.llm.routing import ProviderConfig, Router

from .test_client_mock import OPENAI_STREAM, Script, openai_json, sse

ASK = [{"role": "user", "content": "What is 2 + 2?"}]
ENV = {"OPENAI_API_KEY": "sk-cache-test-0123456789"}


def make(script: Script, tmp_path: Path, policy: CachePolicy | None = None,
         backend: Any = None) -> tuple[Client, EventLog, ResponseCache]:
    log = EventLog(tmp_path / "events")
    cache = ResponseCache(backend if backend is not None else MemoryCache(), policy)
    router = Router({"openai": ProviderConfig("openai", "http://x/v1", "OPENAI_API_KEY")},
                    env=ENV)
    client = Client(event_log=log, router=router, cache=cache,
                    transport=httpx.MockTransport(script),
                    retry=RetryPolicy(initial_backoff=0.0, max_backoff=0.0))
    return client, log, cache


def rows(log: EventLog, kind: str) -> list[dict[str, Any]]:
    with log.store() as store:
        return store.df("SELECT * FROM events WHERE kind = ? ORDER BY ts",
                        [kind]).to_dict("records")


def test_same_deterministic_request_twice_costs_one_call(tmp_path: Path) -> None:
    script = Script(openai_json(text="4", prompt=1000, completion=10))
    client, log, _ = make(script, tmp_path)
    first = client.complete(ASK, model="gpt-4o", temperature=0)
    second = client.complete(ASK, model="gpt-4o", temperature=0)
    assert len(script.requests) == 1
    assert second.text == "4" and second.cached and second.cost_usd == 0.0
    assert not first.cached and first.cost_usd and first.cost_usd > 0
    lookups = rows(log, "cache")
    assert [r["cache_outcome"] for r in lookups] == ["miss", "hit"]
    assert lookups[1]["saved_cost_usd"] == pytest.approx(first.cost_usd)
    calls = rows(log, "llm.call")
    assert [c["cache_outcome"] for c in calls] == ["miss", "hit"]
    assert calls[0]["cache_key"] == calls[1]["cache_key"]
    with log.store() as store:  # spend counts the provider call once, never the hit
        assert store.scalar("SELECT sum(cost_usd) FROM events WHERE kind = 'llm.call'") == \
            pytest.approx(first.cost_usd)


def test_sampled_requests_bypass_by_default_and_can_be_allowed(tmp_path: Path) -> None:
    script = Script(openai_json(), openai_json(), openai_json())
    client, log, _ = make(script, tmp_path)
    client.complete(ASK, model="gpt-4o", temperature=0.8)
    client.complete(ASK, model="gpt-4o", temperature=0.8)
    assert len(script.requests) == 2
    assert [r["cache_outcome"] for r in rows(log, "cache")] == ["bypass", "bypass"]
    seeded, _, _ = make(Script(openai_json()), tmp_path / "seeded")
    seeded.complete(ASK, model="gpt-4o", temperature=0.8, seed=1)
    assert seeded.complete(ASK, model="gpt-4o", temperature=0.8, seed=1).cached
    everything, _, _ = make(Script(openai_json()), tmp_path / "all",
                            CachePolicy(deterministic_only=False))
    everything.complete(ASK, model="gpt-4o")
    assert everything.complete(ASK, model="gpt-4o").cached


def test_per_call_overrides(tmp_path: Path) -> None:
    script = Script(openai_json(text="a"), openai_json(text="b"), openai_json(text="c"))
    client, _, _ = make(script, tmp_path)
    client.complete(ASK, model="gpt-4o", temperature=0, no_store=True)
    assert client.complete(ASK, model="gpt-4o", temperature=0).text == "b"  # nothing stored
    # no_cache skips the lookup but stores the fresh answer, refreshing the entry
    assert client.complete(ASK, model="gpt-4o", temperature=0, no_cache=True).text == "c"
    assert client.complete(ASK, model="gpt-4o", temperature=0).text == "c"
    script.responses.append(openai_json(text="d"))
    other = client.complete(ASK, model="gpt-4o", temperature=0, cache_namespace="team-b")
    assert other.text == "d"  # namespaces do not share entries
    for request in script.requests:
        assert all(k not in request.content.decode() for k in ("no_store", "cache_namespace"))


def test_ttl_expires_entries(tmp_path: Path) -> None:
    now = [0.0]
    script = Script(openai_json(text="old"), openai_json(text="new"))
    client, _, _ = make(script, tmp_path, backend=MemoryCache(clock=lambda: now[0]))
    client.complete(ASK, model="gpt-4o", temperature=0, cache_ttl=10)
    now[0] = 5.0
    assert client.complete(ASK, model="gpt-4o", temperature=0).text == "old"
    now[0] = 11.0
    assert client.complete(ASK, model="gpt-4o", temperature=0).text == "new"


def test_stream_replay_gives_the_same_chunks(tmp_path: Path) -> None:
    script = Script(sse(*OPENAI_STREAM))
    client, _, _ = make(script, tmp_path)
    live = client.stream(ASK, model="gpt-4o", temperature=0)
    live_pieces = [c.text for c in live if c.text]
    replay = client.stream(ASK, model="gpt-4o", temperature=0)
    replay_pieces = [c.text for c in replay if c.text]
    assert replay_pieces == live_pieces == ["Hel", "lo"] and len(script.requests) == 1
    assert replay.completion is not None and replay.completion.cached
    assert replay.completion.usage == live.completion.usage  # type: ignore[union-attr]
    # a cached non-streamed answer can be consumed as a stream too
    whole = client.complete(ASK, model="gpt-4o", temperature=0)
    assert whole.text == "Hello" and whole.cached


def test_a_cut_stream_is_never_stored(tmp_path: Path) -> None:
    from devora_lab.errors import StreamInterruptedError

    script = Script(sse(*OPENAI_STREAM[:2]), sse(*OPENAI_STREAM))
    client, _, _ = make(script, tmp_path)
    with pytest.raises(StreamInterruptedError):
        list(client.stream(ASK, model="gpt-4o", temperature=0))
    assert client.stream(ASK, model="gpt-4o", temperature=0).text() == "Hello"
    assert len(script.requests) == 2


def test_corrupt_entry_is_a_miss_with_a_warning(tmp_path: Path) -> None:
    script = Script(openai_json(text="first"), openai_json(text="fresh"))
    backend = MemoryCache()
    client, _, cache = make(script, tmp_path, backend=backend)
    client.complete(ASK, model="gpt-4o", temperature=0)
    key = cache.key("openai", "gpt-4o", ASK, {"temperature": 0})
    backend.set(key.full, b'{"v": 1, "text": "half')
    with pytest.warns(CorruptCacheEntryWarning):
        reply = client.complete(ASK, model="gpt-4o", temperature=0)
    assert reply.text == "fresh" and not reply.cached
    assert client.complete(ASK, model="gpt-4o", temperature=0).text == "fresh"


def test_semantic_hit_within_the_same_model_and_parameters(tmp_path: Path) -> None:
    from devora_lab.cache.semantic import HashingEmbedder, SemanticIndex

    script = Script(openai_json(text="Use reversed() or [::-1]."), openai_json(text="other"),
                    openai_json(text="mini"))
    log = EventLog(tmp_path / "events")
    cache = ResponseCache(MemoryCache(), semantic=SemanticIndex(HashingEmbedder(), 0.9))
    router = Router({"openai": ProviderConfig("openai", "http://x/v1", "OPENAI_API_KEY")},
                    env=ENV)
    client = Client(event_log=log, router=router, cache=cache,
                    transport=httpx.MockTransport(script))
    system = {"role": "system", "content": "You answer Python questions."}
    client.complete([system, {"role": "user", "content": "How do I reverse a list in Python?"}],
                    model="gpt-4o", temperature=0)
    near = client.complete([system, {"role": "user",
                                     "content": "how do I reverse a list in python"}],
                           model="gpt-4o", temperature=0)
    assert near.cached and near.text == "Use reversed() or [::-1]."
    far = client.complete([system, {"role": "user", "content": "What is a Python decorator?"}],
                          model="gpt-4o", temperature=0)
    assert not far.cached
    other_model = client.complete([system, {"role": "user",
                                            "content": "how do I reverse a list in python"}],
                                  model="gpt-4o-mini", temperature=0)
    assert not other_model.cached and len(script.requests) == 3
    lookups = rows(log, "cache")
    assert [r["cache_outcome"] for r in lookups] == ["miss", "semantic_hit", "miss", "miss"]
    assert lookups[1]["value"] >= 0.9
