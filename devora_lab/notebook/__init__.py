"""Helpers the workbench notebooks use: charts that render offline, the dashboard and its
widgets, per-topic views, and the report runner.

The curated names below load their module on first use (altair, ipywidgets and papermill
are heavy); the modules themselves are ``display``, ``charts``, ``widgets``, ``dashboard``,
``views`` (costs, experiments, rag, cache) and ``report``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devora_lab._lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(
    __name__, globals(), {f"{__name__}.{module}": names for module, names in _HOMES.items()},
    __all__)
