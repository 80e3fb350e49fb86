"""Helpers the workbench notebooks use: charts that render offline, the dashboard and its
widgets, per-topic views, and the report runner.

The curated names below load their module on first use (altair, ipywidgets and papermill
are heavy); the modules themselves are ``display``, ``charts``, ``widgets``, ``dashboard``,
``views`` (costs, experiments, rag, cache) and ``report``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devora_lab.notebook.dashboard import Dashboard, slowest_calls
    from devora_lab.notebook.display import chart_bundle, chart_svg, show
    from devora_lab.notebook.report import (
        Report,
        ReportResult,
        discover_reports,
        export_html,
        run_report,
        run_reports,
    )
    from devora_lab.notebook.widgets import DashboardWidget, Selection

__all__ = ["Dashboard", "DashboardWidget", "Report", "ReportResult", "Selection",
           "chart_bundle", "chart_svg", "discover_reports", "export_html", "run_report",
           "run_reports", "show", "slowest_calls"]

_HOMES = {
    "dashboard": ("Dashboard", "slowest_calls"),
    "display": ("chart_bundle", "chart_svg", "show"),
    "report": ("Report", "ReportResult", "discover_reports", "export_html", "run_report",
               "run_reports"),
    "widgets": ("DashboardWidget", "Selection"),
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"devora_lab.notebook.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'devora_lab.notebook' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
