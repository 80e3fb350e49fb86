"""Costs: a hard budget refusing a call before it is sent, spend by agent, a forecast.

Shows: a ``Budget`` (here per agent and day) that every client of the workspace enforces
by reserving each call's worst-case cost first; the ``BudgetExceededError`` a refused call
raises (nothing was sent, nothing was spent); ``lab.costs.breakdown(by=("agent",))``; and
``lab.costs.forecast()``, daily spend for the next week with 80 % / 95 % intervals.

Run:  python examples/costs_and_budgets.py
      (``devora-lab budgets set``, ``costs breakdown`` and ``forecast`` do the same)
"""

from __future__ import annotations

from _offline import example_workspace

from devora_lab import Agent, Lab
from devora_lab.costs.budgets import Budget
from devora_lab.costs.wiring import budget_registry
from devora_lab.errors import BudgetExceededError
from devora_lab.sim.workload import generate_workload


class Drafter(Agent):
    name = "drafter"
    model = "gpt-4o-mini"


with example_workspace() as workspace, Lab(workspace) as lab:
    with lab.event_log.store() as store:
        history = store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' "
                               "AND ts < current_date")
    if not history:  # a forecast needs past days: give a fresh workspace three weeks of them
        summary = generate_workload(lab.event_log, days=21, calls_per_day=150, progress=False)
        print(f"wrote 21 days of simulated team traffic: ${summary.total_cost_usd:,.2f}")

    # Budgets are set before the lab's client is built; `devora-lab budgets set` works too.
    budgets = budget_registry(lab.workspace)
    budgets.set(Budget(name="drafter-daily", limit_usd=0.02, period="daily", scope="agent",
                       match="drafter"))
    drafter = Drafter(lab, user_id="u-3")
    ask = [{"role": "user", "content": "Draft a two-line changelog entry."}]
    for _ in range(3):
        drafter.call_llm(ask, max_tokens=100)  # worst case ~$0.00006 each: allowed
    try:
        drafter.call_llm(ask, model="gpt-4o", max_tokens=4096)  # worst case ~$0.04
    except BudgetExceededError as refused:
        print(f"refused before sending: {refused.budget} limit ${refused.limit_usd}, "
              f"spent ${refused.spent_usd:.5f}, this call up to ${refused.reserved_usd:.4f}")
        print(f"  fix: {refused.fix}")
    budgets.remove("drafter-daily")  # leave the workspace as we found it

    spend = lab.costs.breakdown(by=("agent",))
    print("\nspend by agent:")
    spend["agent"] = spend["agent"].fillna("(none: index embeddings)")
    print(spend[["agent", "calls", "errors", "cost_usd", "cost_per_success_usd", "share"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    result = lab.costs.forecast(horizon=7)  # today is partial, so it is forecast too
    print(f"\nforecast of daily spend ({result.forecast.model}, from "
          f"{result.forecast.history_days} days):")
    print(result.forecast.frame[["mean", "lo80", "hi80", "lo95", "hi95"]].round(2).to_string())
    for note in result.forecast.notes:
        print("  note:", note)
