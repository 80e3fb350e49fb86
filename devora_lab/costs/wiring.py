"""Budgets wired to a workspace: the registry file, the ledger the settings name, and the
event-log query that tells a fresh process what a period has already spent."""

from __future__ import annotations

import atexit
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from devora_lab.costs.budgets import Budget, BudgetAlert, BudgetGuard, SpentLookup
from devora_lab.costs.registry import BudgetRegistry

if TYPE_CHECKING:
    from devora_lab.costs.ledger import Ledger
    from devora_lab.events import EventLog
    from devora_lab.workspace import Workspace

__all__ = ["budget_guard", "budget_registry", "spent_in_log"]

_TAG_COLUMNS: Final = ("experiment", "variant", "template_name")


def budget_registry(workspace: Workspace) -> BudgetRegistry:
    """The workspace's budgets, in ``<workspace>/budgets.json``."""
    return BudgetRegistry(workspace.root / "budgets.json")


def _key_filter(key: str) -> tuple[str, list[object]]:
    """SQL for the calls a ledger key covers (``global``, ``user=…``, ``tag:k=v``)."""
    if key == "global":
        return "true", []
    if key.startswith("tag:"):
        tag, _, value = key[4:].partition("=")
        if tag in _TAG_COLUMNS:
            return f"{tag} = ?", [value]
        return "json_extract_string(attributes, '$.' || ?) = ?", [tag, value]
    scope, _, value = key.partition("=")
    column = {"user": "user_id", "model": "request_model", "agent": "agent"}[scope]
    return f"{column} = ?", [value]


def spent_in_log(event_log: EventLog) -> SpentLookup:
    """A ``spent_lookup`` for ``BudgetGuard``: recorded cost in ``[start, end)`` of the
    calls a budget key covers, from the event log."""

    def lookup(budget: Budget, key: str, start: datetime, end: datetime) -> float:
        clause, params = _key_filter(key)
        with event_log.store() as store:
            value = store.scalar(
                f"SELECT coalesce(sum(cost_usd), 0) FROM events WHERE kind IN "
                f"('llm.call', 'embedding') AND ts >= ? AND ts < ? AND {clause}",
                [start, end, *params])
        return float(value or 0.0)

    return lookup


def _ledger(workspace: Workspace) -> Ledger:
    settings = workspace.settings.budgets
    if settings.backend == "redis":
        from devora_lab.costs.ledger import RedisLedger

        return RedisLedger(settings.redis_url, prefix=settings.prefix)
    from devora_lab.costs.ledger import LocalLedger

    return LocalLedger()


def budget_guard(workspace: Workspace, event_log: EventLog | None) -> BudgetGuard | None:
    """The guard over the workspace's budgets, or None when none is set."""
    budgets = budget_registry(workspace).list()
    if not budgets:
        return None
    lookup = spent_in_log(event_log) if event_log is not None else None
    return BudgetGuard(budgets, _ledger(workspace), event_log=event_log, spent_lookup=lookup,
                       on_alert=_alert_sinks(workspace))


def _alert_sinks(workspace: Workspace) -> Callable[[BudgetAlert], None] | None:
    """Budget thresholds go to the sinks of the workspace's alerts file, when it has any."""
    from devora_lab.monitoring.wiring import alert_config, dispatcher_for

    config = alert_config(workspace)
    if not config.sinks:
        return None
    dispatcher = dispatcher_for(config)
    # A budget alert raised just before the agent exits is still delivered (up to 5 s).
    atexit.register(dispatcher.flush, 5.0)
    return dispatcher
