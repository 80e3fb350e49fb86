"""Agent and Lab: tagging, cache switches, sync/async parity, statistics from the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devora_lab import Agent, Lab
from devora_lab.sim.server import SimServer

ENV_KEYS = {"OPENAI_API_KEY": "sk-agent-test", "ANTHROPIC_API_KEY": "sk-ant-agent-test"}


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lab:
    sim = SimServer(seed=9, latency_scale=0).start()
    for name, value in {**sim.env(), **ENV_KEYS}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "devora.toml").write_text('[cache]\nbackend = "memory"\n')
    made = Lab(tmp_path)
    yield made  # type: ignore[misc]
    made.close()
    sim.stop()


class Coder(Agent):
    name = "coder"
    model = "gpt-4o-mini"


def test_calls_are_tagged_with_the_agent_user_and_session(lab: Lab) -> None:
    agent = Coder(lab, user_id="u-1", session_id="s-1")
    reply = agent.call_llm([{"role": "user", "content": "Write a haiku about logs."}])
    assert reply.text
    with lab.event_log.store() as store:
        rows = store.rows("SELECT kind, agent, user_id, session_id FROM events "
                          "WHERE kind IN ('llm.call', 'llm.attempt')")
    assert rows and all(r[1:] == ("coder", "u-1", "s-1") for r in rows)


def test_use_cache_false_neither_reads_nor_writes(lab: Lab) -> None:
    agent = Coder(lab)
    ask = [{"role": "user", "content": "2 + 2?"}]
    agent.call_llm(ask, temperature=0, use_cache=False)
    assert not agent.call_llm(ask, temperature=0).cached  # nothing was stored
    assert agent.call_llm(ask, temperature=0).cached
    assert not agent.call_llm(ask, temperature=0, use_cache=False).cached


def test_async_calls_match_sync_ones(lab: Lab) -> None:
    agent = Coder(lab)
    ask = [{"role": "user", "content": "Name a sorting algorithm."}]
    sync = agent.call_llm(ask, seed=3)

    async def run() -> str:
        reply = await agent.acall_llm(ask, seed=3, use_cache=False)
        await lab.async_client.aclose()
        return reply.text

    assert asyncio.run(run()) == sync.text


def test_stats_come_from_the_event_log(lab: Lab) -> None:
    coder, reviewer = Coder(lab), Coder(lab, name="reviewer", model="claude-3-haiku-20240307")
    ask = [{"role": "user", "content": "Explain recursion briefly."}]
    for _ in range(3):
        coder.call_llm(ask, temperature=0)
    reviewer.call_llm(ask)
    stats = coder.stats()
    assert stats.calls == 3 and stats.errors == 0 and stats.cache_hit_rate == pytest.approx(2 / 3)
    assert stats.input_tokens > 0 and stats.cost_usd > 0
    assert stats.p50_latency_ms is not None and stats.p95_latency_ms is not None
    frame = lab.agent_stats()
    assert set(frame["agent"]) == {"coder", "reviewer"}
    assert Coder(lab, name="idle").stats().calls == 0


def test_two_labs_are_independent(tmp_path: Path) -> None:
    first, second = Lab(tmp_path / "a"), Lab(tmp_path / "b")
    assert first.event_log.root != second.event_log.root
    first.close()
    second.close()


def test_team_agents_log_agent_template_and_version(lab: Lab) -> None:
    from devora_lab.team import Architect, Coder, Reviewer

    Coder(lab).generate_component("LoginForm", "Email and password fields with validation.")
    Architect(lab).analyse("devora", "An LLM call logger.", concerns=["scaling"],
                           context="Events are Parquet files partitioned by day.")
    review = Reviewer(lab).review("- x = 1\n+ x = 2\n")
    assert review.text
    production = lab.prompts.get("code-review").version
    with lab.event_log.store() as store:
        rows = set(store.rows("SELECT agent, template_name, template_version FROM events "
                              "WHERE kind = 'llm.call'"))
    assert ("reviewer", "code-review", production) in rows
    assert {r[:2] for r in rows} == {("coder", "component-generation"),
                                     ("architect", "architecture-analysis"),
                                     ("reviewer", "code-review")}


def test_run_template_follows_labels(lab: Lab) -> None:
    from devora_lab.team import Reviewer

    base = lab.prompts.get("code-review")
    newer = lab.prompts.register(
        "code-review", [dict(m) for m in base.messages] + [
            {"role": "user", "content": "Answer in at most five bullet points."}],
        variables=dict(base.variables), model=base.model, params=dict(base.params))
    lab.prompts.set_label("code-review", "staging", newer.version)
    Reviewer(lab).review("+ print('hi')\n", label="staging")
    with lab.event_log.store() as store:
        used = store.scalar("SELECT template_version FROM events WHERE kind = 'llm.call'")
    assert used == newer.version and newer.version != base.version


def test_agent_retrieves_cited_context_within_budget(lab: Lab, tmp_path: Path) -> None:
    from devora_lab.llm.tokens import count_tokens
    from devora_lab.rag.ingest import Indexer
    from devora_lab.team import Architect

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "storage.md").write_text(
        "# Storage\n\n## Event log\n\nEvents are appended to JSON-lines segments and rolled "
        "into Parquet files partitioned by day.\n\n## Cache\n\nResponses are cached in "
        "SQLite or Redis.\n")
    (docs / "ops.md").write_text("# Operations\n\nAlerts go to a webhook.\n")
    Indexer(lab.retriever.store, lab.retriever.embedder).index([docs], progress=False)
    architect = Architect(lab)
    found = architect.retrieve("How are events stored in Parquet?", max_tokens=120)
    assert found.hits and "[1]" in found.context and "storage.md" in found.context
    assert count_tokens(found.context, "gpt-4o") <= 120
    reply = architect.analyse("devora", "How should the event log scale?")
    assert reply.text
    with lab.event_log.store() as store:
        rows = store.rows("SELECT agent, item_count FROM events WHERE kind = 'retrieval'")
    assert len(rows) == 2 and all(agent == "architect" and n >= 1 for agent, n in rows)


def test_lab_builds_each_part_once_across_threads(tmp_path: Path) -> None:
    import threading

    from devora_lab import Lab

    lab = Lab(tmp_path / "ws")
    seen: list[object] = []
    start = threading.Barrier(8)

    def grab() -> None:
        start.wait()
        seen.append(lab.client)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1
    lab.close()
