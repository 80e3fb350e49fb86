"""examples/: every script runs as a user would run it, against the simulator, and says what
its docstring promises.

Each script is run in a fresh interpreter with the endpoint in ``OPENAI_BASE_URL`` /
``ANTHROPIC_BASE_URL`` (a ``SimServer`` started here, as ``devora-lab sim serve`` would be)
and a temporary ``DEVORA_WORKSPACE``; one more run has neither, as on a fresh clone, where
the script must start the simulator itself and leave nothing behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devora_lab.events import EventLog
from devora_lab.sim.server import SimServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY = "sk-examples-test-0123456789"

#: Per script, patterns its output must contain: the lines a reader looks for.
EXPECTED: dict[str, tuple[str, ...]] = {
    "basic_call.py": (r"tokens:\s+\d+ in, \d+ out", r"cost:\s+\$0\.\d+ \(priced\)",
                      r"first token after \d+ ms", r"the logged event:\nkind\s+llm\.call"),
    "rag.py": (r"indexed \d+ files \(0 unchanged\): \d+ chunks added",
               r"retrieved [1-5] chunks, \d+ tokens of context", r"sources:\n  \[1\] \S+"),
    "templates.py": (r"registered versions 1-[0-9a-f]{8} and 2-[0-9a-f]{8}",
                     r"strict rendering: .*'max_bullets' is missing",
                     r"records template release-notes version 2-[0-9a-f]{8}"),
    "monitoring.py": (r"last hour, by model:", r"WARNING devora_lab\.alerts: FIRING",
                      r"FIRING\s+hourly spend per model \[gpt-4o-2024",
                      r"health: (ok|warn) \(exit code [01]\)"),
    "costs_and_budgets.py": (r"refused before sending: drafter-daily limit \$0\.02",
                             r"spend by agent:", r"forecast of daily spend \(\w+, from 2\d days\)"),
    "ab_test.py": (r"after 20 users: no decision yet, because\n(  - .*\n)*"
                   r"  - minimum sample not reached",
                   r"decision: winner terse, experiment completed"),
    "export_dashboard_data.py": (r"overview_by_model\.csv .* 2 rows",
                                 r"llm_calls\.parquet .* 10 rows",
                                 r"llm_calls\.csv .* 10 rows"),
}


def _scripts() -> list[str]:
    """The examples a user runs; ``_offline.py`` is their shared setup, not an example."""
    return sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


def _clean_env() -> dict[str, str]:
    """This environment without any provider or workspace setting that could leak in."""
    prefixes = ("OPENAI_", "ANTHROPIC_", "OPENROUTER_", "DEVORA_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _run(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_every_example_is_run_and_checked() -> None:
    assert set(_scripts()) == set(EXPECTED), "add the new example's key lines to EXPECTED"
    helpers = {path.name for path in EXAMPLES.glob("_*.py")}
    assert helpers == {"_offline.py"}, "only the shared setup may hide from the tests"


@pytest.mark.parametrize("script", _scripts())
def test_example_runs(script: str, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    with SimServer(seed=7, latency_scale=0) as sim:
        env = {**_clean_env(), **sim.env(), "OPENAI_API_KEY": KEY,
               "ANTHROPIC_API_KEY": KEY, "DEVORA_WORKSPACE": str(workspace)}
        done = _run(script, env, tmp_path)
        served = sim.stats()["requests"]
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "offline simulator" not in output  # it used the endpoint it was given
    for pattern in EXPECTED[script]:
        assert re.search(pattern, done.stdout), f"{pattern!r} not in:\n{done.stdout}"
    assert KEY not in output
    assert served > 0
    with EventLog(workspace / "events").store() as store:
        assert store.count("llm.call") > 0  # logged to DEVORA_WORKSPACE


def test_runs_on_a_fresh_clone_without_any_setting(tmp_path: Path) -> None:
    done = _run("basic_call.py", _clean_env(), tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(r"using the offline simulator at http://127\.0\.0\.1:\d+", done.stdout)
    assert "the logged event:" in done.stdout
    assert list(tmp_path.iterdir()) == []  # a temporary workspace, not ./devora-workspace
