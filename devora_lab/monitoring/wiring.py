"""A workspace's alerting, assembled: its rules file, its sinks and an ``AlertManager``.

The rules live in ``<workspace>/alerts.toml`` unless a path is given; the state of what is
firing in ``<workspace>/alerts/``. The same sinks receive the budget thresholds of
``devora_lab.costs`` (the budget guard's ``on_alert``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from devora_lab.monitoring.rules import AlertConfig, load_alert_config
from devora_lab.monitoring.sinks import Dispatcher, build_sinks

if TYPE_CHECKING:
    from devora_lab.events import EventLog
    from devora_lab.monitoring.alerting import AlertManager
    from devora_lab.workspace import Workspace

__all__ = ["alert_config", "alert_manager", "alerts_path", "dispatcher_for"]


def alerts_path(workspace: Workspace) -> Path:
    """Where the workspace's rules file is: ``<workspace>/alerts.toml``."""
    return workspace.root / "alerts.toml"


def alert_config(workspace: Workspace, path: str | os.PathLike[str] | None = None) -> AlertConfig:
    """The validated rules and sinks (empty when there is no rules file)."""
    return load_alert_config(path if path is not None else alerts_path(workspace))


def dispatcher_for(config: AlertConfig) -> Dispatcher:
    """A dispatcher over the configured sinks; with none configured, the log only."""
    from devora_lab.monitoring.sinks import LogSink

    sinks = build_sinks(config.sinks)
    return Dispatcher(sinks or [LogSink()])


def alert_manager(workspace: Workspace, event_log: EventLog,
                  path: str | os.PathLike[str] | None = None,
                  dispatcher: Dispatcher | None = None) -> AlertManager:
    """An ``AlertManager`` over the workspace's rules, log and sinks."""
    from devora_lab.monitoring.alerting import AlertManager  # budget wiring needs only sinks

    config = alert_config(workspace, path)
    return AlertManager(config, event_log, dispatcher or dispatcher_for(config),
                        workspace.root / "alerts")
