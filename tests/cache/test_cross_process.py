"""Done-when of the cache: the same deterministic request twice costs one provider call,
across processes, with the disk cache and with Redis (real servers on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devora_lab.events import EventLog
from devora_lab.sim.server import SimServer

CALL = """
from devora_lab import Client
client = Client.from_workspace()
reply = client.complete([{"role": "user", "content": "Name three prime numbers."}],
                        model="gpt-4o-mini", temperature=0)
print("cached" if reply.cached else "fresh", reply.text[:30])
"""


def _run_twice(workspace: Path, sim: SimServer, toml: str) -> list[str]:
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "devora.toml").write_text(toml)
    env = {**os.environ, **sim.env(), "OPENAI_API_KEY": "sk-cross-process-test",
           "DEVORA_WORKSPACE": str(workspace)}
    outputs = []
    for _ in range(2):  # two separate processes, one after the other
        done = subprocess.run([sys.executable, "-c", CALL], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split()[0])
    return outputs


def _chat_requests(sim: SimServer) -> int:
    return int(sim.stats()["endpoints"].get("chat/completions", 0))


def test_disk_cache_is_shared_by_processes(tmp_path: Path) -> None:
    with SimServer(seed=3, latency_scale=0) as sim:
        outputs = _run_twice(tmp_path / "ws", sim, '[cache]\nbackend = "disk"\n')
        assert outputs == ["fresh", "cached"] and _chat_requests(sim) == 1
    with EventLog(tmp_path / "ws" / "events").store() as store:
        outcomes = [row[0] for row in store.rows(
            "SELECT cache_outcome FROM events WHERE kind = 'cache' ORDER BY ts")]
    assert outcomes == ["miss", "hit"]


def test_redis_cache_is_shared_by_processes(tmp_path: Path, redis_url: str) -> None:
    with SimServer(seed=4, latency_scale=0) as sim:
        toml = f'[cache]\nbackend = "redis"\nredis_url = "{redis_url}"\nnamespace = "cross"\n'
        outputs = _run_twice(tmp_path / "ws", sim, toml)
        assert outputs == ["fresh", "cached"] and _chat_requests(sim) == 1


def test_memory_cache_is_per_process(tmp_path: Path) -> None:
    with SimServer(seed=5, latency_scale=0) as sim:
        outputs = _run_twice(tmp_path / "ws", sim, '[cache]\nbackend = "memory"\n')
        assert outputs == ["fresh", "fresh"] and _chat_requests(sim) == 2


@pytest.mark.parametrize("backend", ["none"])
def test_cache_can_be_switched_off(tmp_path: Path, backend: str) -> None:
    with SimServer(seed=6, latency_scale=0) as sim:
        _run_twice(tmp_path / "ws", sim, f'[cache]\nbackend = "{backend}"\n')
        assert _chat_requests(sim) == 2
    with EventLog(tmp_path / "ws" / "events").store() as store:
        assert store.count("cache") == 0
        assert store.scalar("SELECT count(DISTINCT cache_key) FROM events "
                            "WHERE kind = 'llm.call'") == 1  # keys logged for what-if analysis
