"""Budgets enforced by the real client over a real socket (the simulator): a hard budget
refuses a call before it is sent, settles real costs, alerts, and survives a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devora_lab.costs.budgets import Budget
from devora_lab.costs.wiring import budget_registry
from devora_lab.costs.workbench import Costs
from devora_lab.errors import BudgetExceededError
from devora_lab.lab import Lab
from devora_lab.llm.driver import Tags
from devora_lab.sim.server import SimServer
from devora_lab.workspace import Workspace

PROMPT = [{"role": "user", "content": "Summarise the design of an event log in one line."}]


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    with SimServer(seed=4, latency_scale=0) as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        yield server


def _lab(root: Path, budget: Budget) -> Lab:
    workspace = Workspace(root).ensure()
    budget_registry(workspace).set(budget)
    return Lab(workspace)


def test_hard_budget_refuses_before_sending(tmp_path: Path, sim: SimServer) -> None:
    lab = _lab(tmp_path, Budget(name="tiny", limit_usd=0.05, scope="user", match="*"))
    spent, refused, completed = 0.0, 0, 0
    for _ in range(40):
        try:
            done = lab.client.complete(PROMPT, model="gpt-4o", max_tokens=200,
                                       tags=Tags(user_id="ann"))
        except BudgetExceededError as error:
            refused += 1
            # the ledger counts whole micro-dollars, rounding each cost up
            assert error.budget == "tiny" and error.spent_usd == pytest.approx(spent, abs=1e-4)
            assert "tiny" in str(error)
            break
        spent += done.cost_usd or 0.0
        completed += 1
    sent = sim.stats()["requests"]
    lab.close()
    assert refused == 1 and spent <= 0.05
    assert sent == completed  # nothing was sent for the refused call
    worst = lab.client.estimate(PROMPT, model="gpt-4o", max_tokens=200).max_cost_usd or 0.0
    assert 0.05 - spent < worst  # refused only when the worst case would not have fitted
    with lab.event_log.store() as store:
        rows = store.rows("SELECT severity, name, user_id FROM events WHERE kind = 'budget' "
                          "ORDER BY ts")
    assert ("error", "tiny", "ann") in rows  # the refusal
    assert [r[0] for r in rows].count("warning") == 1  # 80 % crossed once
    # another user has a budget of their own
    other = Lab(Workspace(tmp_path))
    assert other.client.complete(PROMPT, model="gpt-4o", max_tokens=200,
                                 tags=Tags(user_id="bob")).text
    other.close()


def test_a_new_process_remembers_todays_spend(tmp_path: Path, sim: SimServer) -> None:
    first = _lab(tmp_path, Budget(name="day", limit_usd=1.0))
    for _ in range(3):
        first.client.complete(PROMPT, model="gpt-4o-mini", max_tokens=50)
    first.close()
    status = Costs(tmp_path).budget_status().set_index("budget")
    spent = Costs(tmp_path).breakdown(()).loc[0, "cost_usd"]
    assert status.loc["day", "spent_usd"] == pytest.approx(spent, abs=1e-6)  # micro-dollars
    assert status.loc["day", "reserved_usd"] == 0


def test_a_labs_two_clients_share_one_budget(tmp_path: Path, sim: SimServer) -> None:
    import asyncio

    lab = _lab(tmp_path, Budget(name="shared", limit_usd=1.0))
    done = lab.client.complete(PROMPT, model="gpt-4o-mini", max_tokens=50)
    async def from_async() -> float | None:
        answer = await lab.async_client.complete(PROMPT, model="gpt-4o-mini", max_tokens=50)
        await lab.async_client.aclose()
        return answer.cost_usd

    later_cost = asyncio.run(from_async())
    guard = lab.client.settings.budget
    assert guard is not None and guard is lab.async_client.settings.budget
    status = guard.status().set_index("budget")  # type: ignore[attr-defined]
    spent = (done.cost_usd or 0.0) + (later_cost or 0.0)
    assert status.loc["shared", "spent_usd"] == pytest.approx(spent, abs=2e-6)
    lab.close()
