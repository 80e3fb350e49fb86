"""The demo's budgets, experiment and alert rules, set through the public APIs as a team
would set them.

Budget limits are derived from the workspace's own history and the planned live tasks, so
that the story holds at any hour of the day: the hard per-user daily limit sits where the
day's heaviest users run into it late in their live work (``budget`` events
with ``outcome = refused``, ``BudgetExceededError`` in the agent), while the soft team
limits only alert, through the sinks of ``alerts.toml``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Final

from devora_lab.costs.budgets import Budget
from devora_lab.costs.wiring import budget_registry
from devora_lab.experiments.model import Experiment, Variant
from devora_lab.experiments.registry import ExperimentRegistry
from devora_lab.llm.pricing import PriceBook
from devora_lab.prompts import PromptRegistry

if TYPE_CHECKING:
    from devora_lab.demo_live import Task
    from devora_lab.events import EventLog
    from devora_lab.workspace import Workspace

__all__ = ["TERSE_MAX_TOKENS", "live_estimate", "nice", "set_budgets", "start_experiment",
           "write_alert_rules"]

TERSE_MAX_TOKENS: Final = 400
_STOPPED_SHARE: Final = 0.1  # of the expected live spend, over the per-user limit
_FLOOR_CALLS: Final = 1.5  # the per-user limit is at least this many large worst cases
_MAX_TOKENS: Final = 4096  # the built-in templates' max_tokens
_TEMPLATE_TOKENS: Final = 1500  # template text and retrieved context around a task's input
_CHECKLIST: Final = """
Work through this checklist in order: inputs validated; errors handled or propagated;
resources closed; no secrets or personal data logged; tests cover the change. Answer with
at most eight bullet points, most severe first, and nothing else."""

_SPENT_TODAY: Final = """
SELECT user_id, coalesce(sum(cost_usd), 0) AS spent FROM events
WHERE kind IN ('llm.call', 'embedding') AND ts >= ? GROUP BY user_id
"""
_MEAN_COST: Final = """
SELECT agent, request_model, avg(coalesce(cost_usd, 0)) AS cost FROM events
WHERE kind = 'llm.call' AND agent IS NOT NULL GROUP BY agent, request_model
"""
_DAILY: Final = """
SELECT coalesce(sum(cost_usd), 0) / greatest(count(DISTINCT CAST(ts AS DATE)), 1)
FROM events WHERE kind IN ('llm.call', 'embedding')
"""
_ALERTS_TOML: Final = """ `devora-lab alerts check` evaluates these rules.

[[rule]]
name = "provider error rate"
description = "Calls that failed after their retries and fallback, per provider."
metric = "error_rate"
window = "15m"
op = ">"
threshold = 0.02
by = "provider"
min_requests = 20
severity = "critical"

[[rule]]
name = "provider retries"
description = "Calls that needed a retry: a provider in trouble shows here before errors do."
metric = "retries"
window = "15m"
op = ">"
threshold = 10
by = "provider"
severity = "warning"

[[rule]]
name = "p95 latency by model"
metric = "latency_p95_ms"
window = "15m"
op = ">"
threshold = 20000
by = "model"
min_requests = 20
severity = "warning"

[[rule]]
name = "hourly spend unusual"
description = "Spend in the last hour outside the range of the same hour on past days."
type = "forecast"
metric = "cost_usd"
window = "1h"
history = "14d"
interval = 0.95
direction = "above"
min_requests = 10
severity = "warning"

[[sink]]
type = "log"
level = "warning"
"""
_WEBHOOK_SINK: Final = """
[[sink]]
type = "webhook"
url_env = "DEVORA_ALERT_WEBHOOK"
"""


def write_alert_rules(workspace: Workspace, *, header: str) -> None:
    """``alerts.toml``: provider errors and retries, tail latency per model, unusual hourly
    spend; a log sink, and a webhook sink when ``DEVORA_ALERT_WEBHOOK`` names a URL."""
    webhook = _WEBHOOK_SINK if os.environ.get("DEVORA_ALERT_WEBHOOK") else ""
    (workspace.root / "alerts.toml").write_text(header + _ALERTS_TOML + webhook,
                                                encoding="utf-8")


def nice(value: float, *, up: bool) -> float:
    """``value`` rounded to two significant figures, up or down: a limit people would set."""
    if not value > 0:
        return 0.01
    step = 10.0 ** (math.floor(math.log10(value)) - 1)
    rounded = (math.ceil if up else math.floor)(value / step) * step
    return max(round(rounded, 6), 0.01)


def live_estimate(log: EventLog, tasks: Sequence[Task]) -> dict[str, float]:
    """Each user's expected live spend: their tasks at the history's mean cost per call of
    the same agent and model (failures and cache hits included, unpriced calls as $0)."""
    with log.store() as store:
        rows = store.rows(_MEAN_COST)
    mean = {(agent, model): float(cost or 0.0) for agent, model, cost in rows}
    out: dict[str, float] = {}
    for task in tasks:
        model = task.model.rpartition("/")[2]
        out[task.user] = out.get(task.user, 0.0) + mean.get((task.agent, model), 0.0)
    return out


def set_budgets(workspace: Workspace, log: EventLog,
                tasks: Sequence[Task]) -> tuple[Budget, ...]:
    """A hard per-user daily limit that the day's heaviest users hit, a soft team daily
    limit that live spend takes past 80 %, and a soft team monthly limit."""
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    with log.store() as store:
        today = {user: float(spent) for user, spent in store.rows(_SPENT_TODAY, [midnight])
                 if user is not None}
        daily = float(store.scalar(_DAILY) or 0.0)
    live = live_estimate(log, tasks)
    budgets = (
        Budget("per-user-daily", _per_user_limit(today, live, tasks), "daily", "user", "*",
               thresholds=(0.8, 1.0), hard=True),
        Budget("team-daily", nice((sum(today.values()) + sum(live.values())) / 0.9, up=True),
               "daily", thresholds=(0.5, 0.8, 1.0), hard=False),
        Budget("team-monthly", nice(daily * 30 * 1.1, up=True), "monthly",
               thresholds=(0.8, 1.0), hard=False),
    )
    registry = budget_registry(workspace)
    for budget in budgets:
        registry.set(budget)
    return budgets


def _per_user_limit(today: Mapping[str, float], live: Mapping[str, float],
                    tasks: Sequence[Task]) -> float:
    """The limit at which about ``_STOPPED_SHARE`` of the expected live spend is over it:
    the heaviest users' last tasks of the day. A little more is refused in fact, since a
    hard budget refuses a call whose worst case (prompt plus ``max_tokens`` of answer)
    could pass the limit, not only calls after the money is spent; so the limit is never
    below 1.5 times a large call's worst case, or a short run would refuse nearly every
    call whatever its user spent."""
    users = sorted(set(today) | set(live))
    if not users or not sum(live.values()):
        return 1.0

    def over(limit: float) -> float:  # live spend above the limit, summed over users
        return sum(min(live.get(u, 0.0), max(0.0, today.get(u, 0.0) + live.get(u, 0.0)
                                             - limit)) for u in users)

    low, high = 0.0, max(today.get(u, 0.0) + live.get(u, 0.0) for u in users)
    for _ in range(50):  # over() falls as the limit rises: bisect
        middle = (low + high) / 2
        low, high = (middle, high) if over(middle) > _STOPPED_SHARE * sum(live.values()) \
            else (low, middle)
    return max(nice(high, up=False), nice(_FLOOR_CALLS * _worst_case(tasks, 0.9), up=True))


def _worst_case(tasks: Sequence[Task], quantile: float) -> float:
    """A quantile of the tasks' worst cases: the prompt at the input price plus
    ``max_tokens`` of answer at the output price (what a hard budget holds while a call
    runs)."""
    book = PriceBook.default()
    costs = sorted(book.cost(t.model.rpartition("/")[2], t.input_tokens + _TEMPLATE_TOKENS,
                             _MAX_TOKENS) or 0.0 for t in tasks)
    return costs[min(int(quantile * len(costs)), len(costs) - 1)] if costs else 0.0


def start_experiment(workspace: Workspace, name: str) -> Experiment:
    """Register a terse checklist version of ``code-review`` (label ``candidate``) and
    start an A/B test of it against the production version, by user."""
    prompts = PromptRegistry.for_workspace(workspace)
    control = prompts.get("code-review")
    system, *rest = control.messages
    terse = prompts.register(
        "code-review", [{**system, "content": system["content"].rstrip() + "\n" + _CHECKLIST},
                        *rest],
        variables=control.variables, model=control.model,
        params={**control.params, "max_tokens": TERSE_MAX_TOKENS},
        description="The review with a checklist and a short answer.", tags=("review",))
    prompts.set_label("code-review", "candidate", terse.version)
    registry = ExperimentRegistry(workspace.experiments_dir)
    registry.create(Experiment(
        name=name, template="code-review", unit="user", min_samples=50,
        hypothesis=f"a checklist prompt capped at {TERSE_MAX_TOKENS} tokens writes shorter "
                   "reviews without failing more of them or slowing the slowest",
        variants=(Variant("control", template_version=control.version),
                  Variant("terse", template_version=terse.version)),
        primary_metric="output_tokens", guardrails=("success_rate", "p95_latency_ms")),
        by="demo")
    return registry.start(name, by="demo", reason="the demo's live reviewers")
