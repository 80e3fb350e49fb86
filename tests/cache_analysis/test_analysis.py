"""Counterfactual cache analysis: hand-computed replays, prefix reuse, the real Mooncake
trace and the ``cache analyze`` command."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devora_lab.cache.analysis import (
    DEFAULT_PREFIX_MODELS,
    Policy,
    analyze_workspace,
    compare_policies,
    default_policies,
    embed_texts,
    load_prefix_blocks,
    load_requests,
    prefix_reuse,
    prefix_savings,
    replay,
)
from devora_lab.events import Event, EventLog
from devora_lab.events.traces import import_trace
from devora_lab.llm.pricing import PriceBook

T0 = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
HERE = Path(__file__).resolve()
MOONCAKE_SAMPLE = HERE.parents[1] / "fixtures" / "prefix_blocks_invented.jsonl"
SHARED_DATA = next((parent / "shared" / "data" for parent in (HERE.parents[3], HERE.parents[2])
                    if (parent / "shared").is_dir()), HERE.parents[3] / "shared" / "data")
MOONCAKE = SHARED_DATA / "mooncake_synthetic_trace.jsonl"


def call(minute: float, key: str | None, cost: float | None = 0.0, latency: float = 0.0,
         **fields: Any) -> Event:
    """One llm.call at T0 + ``minute``, deterministic unless attributes say otherwise."""
    fields.setdefault("attributes", {"deterministic": True})
    fields.setdefault("request_model", "gpt-4o")
    fields.setdefault("input_tokens", 80)
    fields.setdefault("output_tokens", 20)
    return Event(kind="llm.call", ts=T0 + timedelta(minutes=minute), cache_key=key,
                 cost_usd=cost, latency_ms=latency, status=fields.pop("status", "ok"), **fields)


def requests_of(tmp_path: Path, events: Sequence[Event], **filters: Any) -> pd.DataFrame:
    log = EventLog(tmp_path / "events")
    for event in events:
        log.write(event)
    log.close()
    with log.store() as store:
        return load_requests(store, **filters)


def run(frame: pd.DataFrame, **policy: Any) -> tuple[object, ...]:
    result = replay(frame, Policy("p", **{"deterministic_only": False, **policy}))
    return result.hits, result.lookups, result.dollars_saved, result.latency_saved_ms


# -- exact-key replays --------------------------------------------------------------------


def test_ttl_expires_entries_and_a_miss_stores_again(tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [
        call(0, "A", 0.10, 1000), call(30, "A", 0.20, 900),   # hit (30 min old)
        call(59, "B", 0.05, 500), call(90, "A", 0.40, 800),   # A is 90 min old: miss, stores
        call(100, "A", 0.80, 700), call(119, "B", 0.01, 300),  # hit; B exactly 1 h old: miss
    ])
    hits, lookups, saved, latency = run(frame, ttl_seconds=3600)
    assert (hits, lookups) == (2, 6)
    assert saved == pytest.approx(0.20 + 0.80) and latency == pytest.approx(900 + 700)
    result = replay(frame, Policy("1h", ttl_seconds=3600, deterministic_only=False))
    assert result.spend_saved_share == pytest.approx(1.0 / 1.56)
    assert result.hit_rate == pytest.approx(2 / 6)
    forever = (4, 6, pytest.approx(0.2 + 0.4 + 0.8 + 0.01), pytest.approx(2700))
    assert run(frame) == forever  # the vectorised path
    assert run(frame, ttl_seconds=86_400, max_bytes=10**9) == forever  # the loop path


def test_lru_byte_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    # 100 tokens = 400 bytes an entry: two fit in 1000 bytes. D (1200 bytes) never fits.
    keys = ["A", "B", "A", "C", "B", "A", "B", "C", "D", "D"]
    events = [call(i, key, cost=i + 1.0, latency=10.0 * (i + 1),
                   input_tokens=280 if key == "D" else 80) for i, key in enumerate(keys)]
    frame = requests_of(tmp_path, events)
    assert frame["entry_bytes"].tolist() == [400] * 8 + [1200] * 2
    result = replay(frame, Policy("1 kB", max_bytes=1000, deterministic_only=False))
    # [A] [A B] A hit -> [B A]; C evicts B -> [A C]; B evicts A -> [C B]; A evicts C -> [B A];
    # B hit -> [A B]; C evicts A -> [B C]; D is larger than the cache: stored never.
    assert (result.hits, result.lookups, result.evictions) == (2, 10, 4)
    assert result.dollars_saved == pytest.approx(3.0 + 7.0)
    assert result.latency_saved_ms == pytest.approx(30.0 + 70.0)
    assert run(frame)[0] == 6  # unbounded: A, B, A, B, C and the second D


def test_deterministic_only_bypasses_sampled_calls(tmp_path: Path) -> None:
    sampled: dict[str, Any] = {"attributes": {"deterministic": False}}
    frame = requests_of(tmp_path, [
        call(0, "A", 1.0), call(1, "A", 2.0, **sampled), call(2, "A", 4.0),
        call(3, "B", 8.0, **sampled), call(4, "B", 16.0, **sampled),
        # older logs without the attribute: temperature 0 is deterministic
        call(5, "C", 32.0, attributes={}, temperature=0.0),
        call(6, "C", 64.0, attributes={}, temperature=0.0),
        call(7, "C", 128.0, attributes={}, temperature=0.7),
    ])
    assert frame["deterministic"].tolist() == [True, False, True, False, False, True, True, False]
    only = replay(frame, Policy("det", deterministic_only=True))
    assert (only.hits, only.lookups, only.bypassed) == (2, 4, 4)
    assert only.dollars_saved == pytest.approx(4.0 + 64.0)
    everything = replay(frame, Policy("all", deterministic_only=False))
    assert (everything.hits, everything.lookups, everything.bypassed) == (5, 8, 0)
    assert everything.dollars_saved == pytest.approx(2 + 4 + 16 + 64 + 128)


def test_failed_calls_are_not_stored_and_logged_hits_count_their_real_cost(
        tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [
        call(0, "E", 0.0, 50.0, status="error"), call(1, "E", 1.0, 100.0),
        call(2, "E", 0.0, 2.0, cache_outcome="hit", saved_cost_usd=1.0, saved_latency_ms=100.0),
        call(3, "F", None, 10.0),  # unpriced: counted, saves nothing
        call(4, "F", None, 10.0),
    ])
    assert frame["cost_usd"].tolist()[1:3] == [1.0, 1.0]
    assert frame["storable"].tolist() == [False, True, True, True, True]
    assert run(frame) == (2, 5, pytest.approx(1.0), pytest.approx(110.0))


def test_a_log_without_cache_keys_cannot_be_replayed(tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [call(0, None, 1.0), call(1, None, 1.0)])
    result = replay(frame, Policy("x"))
    assert result.unavailable is not None and "no cache keys" in result.unavailable
    assert (result.hits, result.lookups, result.bypassed) == (0, 0, 2)


def test_since_and_until_select_the_window(tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [call(m, "A") for m in range(6)],
                        since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5))
    assert len(frame) == 3 and frame["ts"].is_monotonic_increasing


def reference_hits(frame: pd.DataFrame, policy: Policy) -> tuple[int, int]:
    """A deliberately naive cache: a list of [key, stored_at, size, last_used] entries."""
    entries: list[list[Any]] = []
    hits = evictions = 0
    t = (frame["ts"] - T0).dt.total_seconds().tolist()
    rows = zip(frame["cache_key"], frame["deterministic"], frame["storable"],
               frame["entry_bytes"].astype(int), strict=True)
    for i, (key, deterministic, storable, size) in enumerate(rows):
        if policy.deterministic_only and not deterministic:
            continue
        ttl = policy.ttl_seconds
        entries = [e for e in entries if ttl is None or t[i] - e[1] < ttl]
        match = [e for e in entries if e[0] == key]
        if match:
            hits += 1
            match[0][3] = i
        elif storable and (policy.max_bytes is None or size <= policy.max_bytes):
            entries.append([key, t[i], size, i])
            while policy.max_bytes is not None and sum(e[2] for e in entries) > policy.max_bytes:
                entries.remove(min(entries, key=lambda e: e[3]))
                evictions += 1
    return hits, evictions


@pytest.mark.parametrize("seed", range(6))
def test_replay_matches_a_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame({
        "ts": T0 + pd.to_timedelta(np.sort(rng.integers(0, 4 * 3600, n)), unit="s"),
        "cache_key": [f"k{k}" for k in rng.integers(0, 40, n)],
        "cost_usd": rng.random(n), "latency_ms": rng.random(n) * 1000,
        "deterministic": rng.random(n) < 0.8, "storable": rng.random(n) < 0.9,
        "entry_bytes": rng.integers(100, 2000, n),
    })
    for ttl in (None, 600.0, 3600.0):
        for bound in (None, 3000, 12_000):
            for only in (False, True):
                policy = Policy("p", ttl, bound, only)
                result = replay(frame, policy)
                assert (result.hits, result.evictions) == reference_hits(frame, policy), policy


# -- semantic -----------------------------------------------------------------------------

P1 = "Summarise the design document for the cache layer in three bullet points."
P2 = "summarise the design document for the cache layer, in three bullet points!"
P3 = "Summarise the design document for the storage layer in three bullet points."
P4 = "Write a haiku about autumn leaves."
P5 = "Summarise the design doc for the cache layer in 3 bullets."


def test_offline_embedding_is_deterministic_and_graded() -> None:
    vectors = embed_texts([P1, P2, P3, P4, P5])
    sims = vectors @ vectors.T
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert sims[0, 1] == pytest.approx(1.0)  # case and punctuation are ignored
    assert 0.9 < sims[0, 2] < 0.95 and 0.8 < sims[0, 4] < 0.9 and sims[2, 4] < 0.8
    assert abs(sims[0, 3]) < 0.2
    assert np.array_equal(embed_texts([P1]), embed_texts([P1]))


@pytest.mark.parametrize(("threshold", "hit_rows"), [
    (1.0, [1]), (0.95, [1]), (0.9, [1, 2]), (0.8, [1, 2, 4]), (0.3, [1, 2, 4]),
])
def test_semantic_threshold_decides_the_hits(tmp_path: Path, threshold: float,
                                            hit_rows: list[int]) -> None:
    prompts = [(P1, "gpt-4o"), (P2, "gpt-4o"), (P3, "gpt-4o"), (P4, "gpt-4o"), (P5, "gpt-4o"),
               (P1, "gpt-4o-mini")]  # another model never hits
    costs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    frame = requests_of(tmp_path, [
        call(i, f"key-{i}", costs[i], 100.0, prompt_text=text, request_model=model)
        for i, (text, model) in enumerate(prompts)])
    result = replay(frame, Policy("s", mode="semantic", threshold=threshold))
    assert (result.hits, result.lookups) == (len(hit_rows), 6)
    assert result.dollars_saved == pytest.approx(sum(costs[i] for i in hit_rows))
    assert replay(frame, Policy("exact")).hits == 0  # every key differs


def test_semantic_needs_prompt_text(tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [call(0, "A"), call(1, "A")])
    result = replay(frame, Policy("s", mode="semantic"))
    assert result.unavailable is not None and 'content_policy = "full"' in result.unavailable
    assert result.lookups == 0


def test_compare_policies_has_a_row_per_policy(tmp_path: Path) -> None:
    frame = requests_of(tmp_path, [call(i * 40, "AB"[i % 2], 1.0, 100.0) for i in range(8)])
    policies = default_policies()
    names = [p.name for p in policies]
    assert len(policies) == 13 and len(set(names)) == 13
    assert sum(p.mode == "semantic" and p.threshold == 0.95 for p in policies) == 1
    table = compare_policies(frame, policies)
    assert table["policy"].tolist() == names
    row = table.set_index("policy").loc["exact forever all unbounded"]
    assert (row["hits"], row["lookups"], row["hit_rate_pct"]) == (6, 8, 75.0)
    assert row["spend_saved_pct"] == 75.0 and row["dollars_saved"] == 6.0
    by_name = table.set_index("policy")["hits"]
    assert by_name["exact 1h all unbounded"] == 0  # each key comes back after 80 minutes
    assert by_name["exact 24h all 64 MiB"] == 6
    assert table.set_index("policy").loc[names[-1], "unavailable"] is not None


# -- prefix reuse -------------------------------------------------------------------------

BLOCKS = [[1, 2, 3], [1, 2, 4], [5, 1, 2], [1, 2, 3, 6]]


def test_prefix_reuse_on_hand_made_blocks() -> None:
    reuse = prefix_reuse(BLOCKS, block_tokens=100, input_tokens=[300, 300, 250, 400])
    assert reuse.prefix_blocks.tolist() == [0, 2, 0, 3]  # [5, 1, 2] shares no prefix
    assert (reuse.blocks_total, reuse.blocks_reused, reuse.blocks_seen_before) == (13, 5, 7)
    assert (reuse.tokens_total, reuse.tokens_reused, reuse.tokens_written) == (1250, 500, 750)
    assert reuse.block_share == pytest.approx(5 / 13) and reuse.requests_with_hit == 2
    # The last request's prefix [1, 2] was last used by request 1, block 3 by request 0.
    assert prefix_reuse(BLOCKS, ttl_requests=2).prefix_blocks.tolist() == [0, 2, 0, 2]
    assert prefix_reuse(BLOCKS, ttl_requests=1).prefix_blocks.tolist() == [0, 2, 0, 0]
    capped = prefix_reuse([[7, 8], [7, 8]], block_tokens=512, input_tokens=[600, 600])
    assert capped.tokens_reused == 600  # the partial last block is not 512 tokens


def test_prefix_savings_use_cached_and_cache_write_rates() -> None:
    reuse = prefix_reuse(BLOCKS, block_tokens=100, input_tokens=[300, 300, 250, 400])
    book = PriceBook.default()
    # gpt-4o: 500 tokens at $1.25/M instead of $2.50/M, no write premium.
    assert prefix_savings(reuse, "gpt-4o", book) == pytest.approx(500 * 1.25 / 1e6)
    # Claude 3.5 Sonnet: reads save 2.70/M, the 750 written tokens cost 0.75/M more.
    assert prefix_savings(reuse, "claude-3-5-sonnet-20241022") == pytest.approx(
        (500 * 2.70 - 750 * 0.75) / 1e6)
    assert prefix_savings(reuse, "no-such-model") is None


def test_prefix_blocks_load_from_an_imported_trace(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events")
    import_trace(log, MOONCAKE_SAMPLE, start=T0)
    log.close()
    rows = [json.loads(line) for line in MOONCAKE_SAMPLE.read_text().splitlines() if line]
    with log.store() as store:
        loaded = load_prefix_blocks(store)
        analysis = analyze_workspace(store)
    assert loaded.blocks == [row["hash_ids"] for row in rows]
    assert loaded.input_tokens == [row["input_length"] for row in rows]
    assert analysis.keyed_requests == 0 and analysis.prefix is not None
    assert all(r.unavailable for r in analysis.results)
    assert set(analysis.prefix_savings) == set(DEFAULT_PREFIX_MODELS)


@pytest.mark.shared_data
def test_real_mooncake_trace_prefix_reuse(tmp_path: Path) -> None:
    if not MOONCAKE.is_file():
        pytest.skip(f"{SHARED_DATA} is not here (a fresh clone)")
    rows = [json.loads(line) for line in MOONCAKE.read_text().splitlines() if line.strip()]
    log = EventLog(tmp_path / "events")
    import_trace(log, MOONCAKE, start=T0)
    log.close()
    with log.store() as store:
        analysis = analyze_workspace(store)
    reuse = analysis.prefix
    assert reuse is not None and reuse.requests == len(rows) == 3993
    # Independently: every block id seen in an earlier request, and the leading run of them.
    seen: set[int] = set()
    seen_before = leading = 0
    for row in rows:
        ids = row["hash_ids"]
        seen_before += sum(block in seen for block in ids)
        run_length = 0
        while run_length < len(ids) and ids[run_length] in seen:
            run_length += 1
        leading += run_length
        seen.update(ids)
    total = sum(len(row["hash_ids"]) for row in rows)
    assert (reuse.blocks_total, reuse.blocks_seen_before) == (total, seen_before)
    assert reuse.blocks_reused == leading  # hash ids are chained: a seen id is a seen prefix
    assert reuse.seen_block_share == pytest.approx(0.6396, abs=5e-5)  # fitted_traces.json
    assert reuse.tokens_total == sum(row["input_length"] for row in rows)
    gpt4o = analysis.prefix_savings["gpt-4o"]
    assert gpt4o == pytest.approx(reuse.tokens_reused * 1.25 / 1e6)
    print(f"\nMooncake: {reuse.block_share:.2%} of blocks, {reuse.token_share:.2%} of tokens "
          f"reusable; saved {analysis.prefix_savings}")


# -- the command --------------------------------------------------------------------------


def cli(argv: list[str]) -> int:
    """``devora-lab ...`` through main once ``cache`` is registered, else a parser of its own."""
    from devora_lab.cli import build_parser, main
    from devora_lab.cli.cache import register

    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    if "cache" in commands.choices:
        return main(argv)
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workspace", default=argparse.SUPPRESS)
    common.add_argument("--config", default=argparse.SUPPRESS)
    register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_cli_prints_the_what_if_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = EventLog(tmp_path / "events")
    for i in range(12):
        log.write(call(i * 10, "AB"[i % 2], 0.5, 2000.0))
    log.close()
    assert cli(["cache", "analyze", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "What-if" in out and "exact 1h all unbounded" in out
    assert "83.3%" in out and "$5.00" in out  # 10 of 12 hit, $0.50 each
    assert "n/a" in out and 'content_policy = "full"' in out
    assert cli(["cache", "analyze", "--workspace", str(tmp_path),
                "--since", (T0 + timedelta(minutes=200)).isoformat()]) == 0
    assert "no llm.call events" in capsys.readouterr().out


def test_cli_says_traces_have_no_keys_but_prices_prefixes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = EventLog(tmp_path / "events")
    import_trace(log, MOONCAKE_SAMPLE, start=T0)
    log.close()
    started = time.perf_counter()
    assert cli(["cache", "analyze", "--workspace", str(tmp_path),
                "--model", "gpt-4o-mini", "no-such-model"]) == 0
    assert time.perf_counter() - started < 10
    out = " ".join(capsys.readouterr().out.split())
    assert "no cache keys" in out and "Prefix analysis can" in out
    assert "blocks reusable as a prefix" in out and "gpt-4o-mini" in out
    assert "not in the price book" in out
