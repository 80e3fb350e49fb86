"""Monitoring over the event log: metrics, alerts and their sinks, exports, Prometheus, health.

The names below are the curated API; each is imported from its module on first use, so
``import devora_lab.monitoring`` does not load scipy or prometheus_client until needed.

- ``metrics``, ``trend``, ``error_breakdown``, ``overview``: DataFrames by any dimension
  and window (``metrics.py``, ``windows.py``);
- ``AlertManager``, ``load_alert_config``, ``Dispatcher`` and the sinks (``alerting.py``,
  ``rules.py``, ``sinks.py``, ``wiring.py``);
- ``export_frame``, ``export_query`` (``export.py``);
- ``EventLogCollector``, ``ClientMetrics``, ``serve_metrics`` (``prometheus.py``);
- ``check_health``, ``HealthReport`` (``health.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devora_lab._lazy import lazy_exports

if TYPE_CHECKING:
    from devora_lab.monitoring.alerting import AlertManager, CheckResult, Evaluation
    from devora_lab.monitoring.export import export_frame, export_query
    from devora_lab.monitoring.health import HealthReport, check_health
    from devora_lab.monitoring.metrics import (
        METRICS,
        OVERVIEW_METRICS,
        Overview,
        error_breakdown,
        metrics,
        overview,
        trend,
    )
    from devora_lab.monitoring.prometheus import ClientMetrics, EventLogCollector, serve_metrics
    from devora_lab.monitoring.rules import AlertConfig, load_alert_config
    from devora_lab.monitoring.sinks import (
        Dispatcher,
        EmailSink,
        LogSink,
        Notification,
        WebhookSink,
    )
    from devora_lab.monitoring.windows import Window, parse_window
    from devora_lab.monitoring.wiring import alert_manager

__all__ = [
    "METRICS",
    "OVERVIEW_METRICS",
    "AlertConfig",
    "AlertManager",
    "CheckResult",
    "ClientMetrics",
    "Dispatcher",
    "EmailSink",
    "Evaluation",
    "EventLogCollector",
    "HealthReport",
    "LogSink",
    "Notification",
    "Overview",
    "WebhookSink",
    "Window",
    "alert_manager",
    "check_health",
    "error_breakdown",
    "export_frame",
    "export_query",
    "load_alert_config",
    "metrics",
    "overview",
    "parse_window",
    "serve_metrics",
    "trend",
]

_HOMES = {
    "alerting": ("AlertManager", "CheckResult", "Evaluation"),
    "export": ("export_frame", "export_query"),
    "health": ("HealthReport", "check_health"),
    "metrics": ("METRICS", "OVERVIEW_METRICS", "Overview", "error_breakdown", "metrics",
                "overview", "trend"),
    "prometheus": ("ClientMetrics", "EventLogCollector", "serve_metrics"),
    "rules": ("AlertConfig", "load_alert_config"),
    "sinks": ("Dispatcher", "EmailSink", "LogSink", "Notification", "WebhookSink"),
    "windows": ("Window", "parse_window"),
    "wiring": ("alert_manager",),
}
__getattr__, __dir__ = lazy_exports(
    __name__, globals(), {f"{__name__}.{module}": names for module, names in _HOMES.items()},
    __all__)
