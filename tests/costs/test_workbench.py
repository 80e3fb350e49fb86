"""One call per question from a workspace (``Costs``) and the ``costs``, ``budgets`` and
``forecast`` commands, on a workspace with seven weeks of constructed history."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devora_lab.cli import main
from devora_lab.costs.budgets import Budget
from devora_lab.costs.wiring import budget_registry
from devora_lab.costs.workbench import Costs
from devora_lab.errors import ConfigError
from devora_lab.events import Event, EventKind
from devora_lab.workspace import Workspace

NOW = datetime(2026, 11, 18, 15, tzinfo=timezone.utc)  # a Wednesday afternoon
DAYS = 49


def _daily_cost(day: int) -> float:
    """Rising spend with a weekday/weekend cycle: about $10 a weekday, $4 a weekend day."""
    weekday = (NOW - timedelta(days=DAYS - day)).weekday()
    return (4.0 if weekday >= 5 else 10.0) * (1 + day / 100) + math.sin(day) * 0.3


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("costs-ws")
    space = Workspace(root).ensure()
    log = space.event_log()
    start = NOW.replace(hour=0) - timedelta(days=DAYS)
    for day in range(DAYS + 1):
        for call in range(4):
            log.write(Event(kind=EventKind.LLM_CALL, ts=start + timedelta(days=day, hours=call),
                            request_model="gpt-4o", response_model="gpt-4o", provider="openai",
                            agent="coder" if call % 2 else "reviewer", user_id=f"u{call}",
                            input_tokens=1000, output_tokens=100, status="ok",
                            cost_usd=_daily_cost(day) / 4, cost_status="priced"))
    log.close()
    budget_registry(space).set(Budget(name="month", limit_usd=300.0, period="monthly"))
    return space


def test_one_call_each(workspace: Workspace) -> None:
    costs = Costs(workspace)
    by_agent = costs.breakdown(("agent",))
    assert set(by_agent["agent"]) == {"coder", "reviewer"}
    assert by_agent["calls"].sum() == 4 * (DAYS + 1)
    result = costs.forecast(budget="month", now=NOW)
    fit = result.forecast
    assert fit.model == "ets" and fit.history_days == DAYS  # today (partial) left out
    frame = fit.frame
    assert (frame["lo95"] <= frame["lo80"]).all() and (frame["lo80"] <= frame["mean"]).all()
    assert (frame["mean"] <= frame["hi80"]).all() and (frame["hi80"] <= frame["hi95"]).all()
    assert result.spent_so_far == pytest.approx(sum(_daily_cost(d) for d in range(32, DAYS + 1)))
    exhausted = result.exhaustion
    assert exhausted is not None and str(exhausted.frame.index[-1].date()) == "2026-11-30"
    p = exhausted.frame["p_exhausted"]
    assert p.is_monotonic_increasing and p.iloc[-1] > 0.9  # ~$10 a day blows $300
    assert exhausted.median_date is not None
    assert isinstance(costs.recommend(), list)
    assert costs.budget_status().loc[0, "budget"] == "month"


def test_bad_budget_name(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="no budget named 'nope'"):
        Costs(workspace).forecast(budget="nope", now=NOW)


def test_commands(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws = ["--workspace", str(workspace.root)]
    assert main(["costs", "breakdown", "--by", "agent,week", *ws]) == 0
    assert "reviewer" in capsys.readouterr().out
    assert main(["costs", "reprice", "--as-model", "gpt-4o-mini", *ws]) == 0
    assert "re-priced as gpt-4o-mini" in capsys.readouterr().out
    assert main(["costs", "recommend", *ws]) == 0
    assert main(["forecast", "--horizon", "7", *ws]) == 0
    assert "lo80" in capsys.readouterr().out
    assert main(["budgets", "set", "agents", "--limit", "5", "--scope", "agent",
                 "--match", "*", "--soft", *ws]) == 0
    assert main(["budgets", "list", *ws]) == 0
    assert "agents: $5.00 daily (agent *; soft" in capsys.readouterr().out
    assert main(["budgets", "remove", "agents", *ws]) == 0
    assert main(["budgets", "set", "x", "--limit", "-1", *ws]) == 2
    assert "limit_usd" in capsys.readouterr().err
    assert main(["costs", "breakdown", "--by", "colour", *ws]) == 2


def test_forecast_command_for_a_budget(workspace: Workspace, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forecast", "--budget", "month", "--workspace", str(workspace.root)]) == 0
    out = capsys.readouterr().out
    assert "budget month" in out and "p_exhausted" in out
