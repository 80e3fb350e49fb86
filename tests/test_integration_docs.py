"""docs/integration.md: every Python block runs against the simulator and logs what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devora_lab.events import EventLog
from devora_lab.sim.server import SimServer

DOC = Path(__file__).resolve().parents[1] / "docs" / "integration.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_guide_has_before_and_after_for_three_ways() -> None:
    assert len(BLOCKS) == 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index: int, tmp_path: Path) -> None:
    with SimServer(seed=index, latency_scale=0) as sim:
        env = {**os.environ, **sim.env(), "OPENAI_API_KEY": "sk-docs-test",
               "ANTHROPIC_API_KEY": "sk-ant-docs-test", "DEVORA_WORKSPACE": str(tmp_path)}
        done = subprocess.run([sys.executable, "-c", BLOCKS[index]], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() or "record_completion" in BLOCKS[index]
    if "from devora_lab" not in BLOCKS[index]:
        return  # a "before" block: plain SDK code, nothing logged
    with EventLog(tmp_path / "events").store() as store:
        agents = {row[0] for row in store.rows(
            "SELECT agent FROM events WHERE kind = 'llm.call'")}
        priced = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                              "AND cost_status = 'priced'")
    assert agents & {"summarizer", "prime-bot", "legacy-bot"} and priced >= 1
