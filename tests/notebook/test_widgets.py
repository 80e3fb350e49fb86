"""The dashboard's logic without a frontend: selections and their query arguments, the
filter options the log offers, the tables, what ``render`` displays, and what a dropdown
change redraws."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devora_lab.costs.breakdown import top_spenders as costs_top_spenders
from devora_lab.errors import ConfigError, WorkspaceError
from devora_lab.events import Event, EventKind, EventLog
from devora_lab.events.store import EventStore
from devora_lab.monitoring.windows import Window
from devora_lab.notebook import dashboard as dashboard_module
from devora_lab.notebook.dashboard import (
    Dashboard,
    Kpis,
    bucket_for,
    slowest_calls,
    top_spenders,
)
from devora_lab.notebook.display import VEGALITE_MIMETYPE
from devora_lab.notebook.widgets import (
    ALL,
    FILTER_DIMENSIONS,
    PERIODS,
    DashboardWidget,
    Selection,
    dropdown_options,
    filter_options,
    period_options,
)
from devora_lab.sim.workload import generate_workload

END = datetime(2026, 11, 18, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventStore]:
    log = EventLog(tmp_path_factory.mktemp("widgets") / "events")
    generate_workload(log, days=3, calls_per_day=600, seed=11, end=END, progress=False)
    # a live alert as AlertManager writes it: its state in `status`, not in attributes
    log.write(Event(kind=EventKind.ALERT, ts=END - timedelta(hours=1), name="p95-latency",
                    severity="warning", status="firing", value=9000.0, threshold=8000.0,
                    attributes={"group": "gpt-4o", "summary": "p95 over 8s"}))
    log.write(Event(kind=EventKind.BUDGET, ts=END - timedelta(hours=2), name="daily-user",
                    severity="warning", value=8.1, threshold=8.0, user_id="ann",
                    attributes={"scope": "user"}))
    log.close()
    with log.store() as reader:
        yield reader


@pytest.fixture
def dash(store: EventStore) -> Dashboard:
    return Dashboard(store=store, period="7d", now=END)


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``IPython.display.display`` was given (render and show call it)."""
    import IPython.display

    seen: list[Any] = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **_: seen.extend(objs))
    return seen


# -- selections and options ----------------------------------------------------------------

def test_a_selection_gives_filters_window_and_a_label() -> None:
    picked = Selection("7d", model="gpt-4o", variant="review-prompt:treatment")
    assert picked.filters() == {"model": "gpt-4o", "variant": "review-prompt:treatment"}
    assert picked.window(END) == Window(END - timedelta(days=7), END, "7d")
    assert str(picked) == ("period 7d · model gpt-4o · all agents · all users · "
                           "variant review-prompt:treatment")
    assert Selection().filters() == {}


def test_an_unknown_period_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown window") as error:
        Selection("fortnight")
    assert "this_month" in str(error.value)


def test_dropdown_values_become_a_selection() -> None:
    picked = Selection(model="gpt-4o").with_values(period="24h", model=ALL, agent="coder",
                                                  unknown="x")
    assert picked == Selection("24h", agent="coder")


def test_options_are_the_logs_distinct_values(store: EventStore) -> None:
    options = filter_options(store)
    assert list(options) == list(FILTER_DIMENSIONS)
    expected = {
        "model": "coalesce(response_model, request_model)", "agent": "agent",
        "user": "user_id", "variant": "experiment || ':' || variant"}
    for name, sql in expected.items():
        rows = store.rows(f"SELECT DISTINCT {sql} FROM events WHERE kind = 'llm.call' "
                          f"AND {sql} IS NOT NULL ORDER BY 1")
        assert options[name] == [value for (value,) in rows], name
    assert options["agent"] == ["architect", "coder", "reviewer"]
    assert all(":" in variant for variant in options["variant"])


def test_dropdowns_offer_all_and_keep_a_value_the_log_lacks() -> None:
    assert dropdown_options(["a", "b"], None) == [ALL, "a", "b"]
    assert dropdown_options(["a"], "new-model") == [ALL, "a", "new-model"]
    assert period_options("14d") == list(PERIODS)
    assert period_options("90d") == ["90d", *PERIODS]


@pytest.mark.parametrize(("seconds", "bucket"), [
    (3600, "5m"), (86_400, "15m"), (2 * 86_400, "1h"), (14 * 86_400, "3h"),
    (31 * 86_400, "12h"), (365 * 86_400, "1d"), (None, "1d"), (0.0, "1d")])
def test_bucket_width_follows_the_window(seconds: float | None, bucket: str) -> None:
    assert bucket_for(seconds) == bucket


# -- tables ------------------------------------------------------------------------------

def test_slowest_calls_are_sorted_filtered_and_inside_the_window(store: EventStore) -> None:
    window = Window(END - timedelta(days=1), END)
    rows = slowest_calls(store, 5, window, {"model": "gpt-4o"})
    assert len(rows) == 5 and set(rows["model"]) == {"gpt-4o"}
    assert rows["latency_ms"].is_monotonic_decreasing
    assert (rows["ts"] >= window.since).all() and (rows["ts"] < END).all()
    slowest = store.scalar(
        "SELECT max(latency_ms) FROM events WHERE kind = 'llm.call' AND ts >= ? AND ts < ? "
        "AND coalesce(response_model, request_model) = 'gpt-4o'", [window.since, END])
    assert rows["latency_ms"].iloc[0] == slowest
    with pytest.raises(ConfigError):
        slowest_calls(store, 0)


def test_top_spenders_match_costs_and_honour_filters(store: EventStore) -> None:
    window = Window(END - timedelta(days=7), END)
    plain = top_spenders(store, "user", 5, window)
    pd.testing.assert_frame_equal(plain, costs_top_spenders(store, "user", 5,
                                                            since=window.since, until=END))
    coder = top_spenders(store, "user", 50, window, {"agent": "coder"})
    assert list(coder.columns) == list(plain.columns)
    expected = store.scalar("SELECT sum(cost_usd) FROM events WHERE kind IN "
                            "('llm.call', 'embedding') AND agent = 'coder' AND ts >= ? "
                            "AND user_id IS NOT NULL", [window.since])
    assert coder["cost_usd"].sum() == pytest.approx(expected)


def test_kpis_agree_with_the_log(dash: Dashboard) -> None:
    kpis = dash.kpis()
    calls = dash.store.scalar("SELECT count(*) FROM events WHERE kind = 'llm.call' AND ts >= ?",
                              [dash.window.since])
    assert kpis.values["requests"] == calls
    cards = dict(kpis.cards())
    assert list(cards) == ["Requests", "Cost", "Error rate", "p95 latency", "Cache hit rate"]
    assert cards["Requests"] == f"{calls:,}"
    assert "Requests" in kpis._repr_html_() and str(kpis).startswith("period 7d")
    assert "n/a" in dict(Kpis("x", {**kpis.values, "cache_hit_rate": float("nan")})
                         .cards()).values()


def test_provider_issues_count_what_went_wrong_on_the_wire(dash: Dashboard) -> None:
    issues = dash.provider_issues().set_index("provider")
    for provider, row in issues.iterrows():
        limited = dash.store.scalar(
            "SELECT count(*) FROM events WHERE kind = 'llm.attempt' AND status = 'error' "
            "AND http_status = 429 AND provider = ? AND ts >= ?", [provider, dash.window.since])
        assert row["rate_limited"] == limited
        assert row["failed_requests"] >= row["rate_limited"] + row["server_errors"]
    assert issues["calls"].sum() == dash.kpis().values["requests"]


def test_alert_history_reads_generated_and_live_alerts(dash: Dashboard) -> None:
    alerts = dash.alerts()
    assert set(alerts["state"]) <= {"firing", "resolved", "crossed"}
    live = alerts[alerts["name"] == "p95-latency"].iloc[0]
    assert (live["state"], live["group"], live["summary"]) == ("firing", "gpt-4o",
                                                              "p95 over 8s")
    budgets = alerts[alerts["kind"] == "budget"]
    assert not budgets.empty and set(budgets["state"]) == {"crossed"}
    assert budgets["group"].notna().all()  # the user who crossed it
    assert budgets[budgets["name"] == "daily-user"]["group"].tolist() == ["ann"]
    assert alerts["ts"].is_monotonic_increasing


def test_error_views_cover_the_window_with_failures_only(dash: Dashboard) -> None:
    errors = dash.error_trend()
    assert errors["error_type"].notna().all()
    buckets = errors.groupby("error_type")["bucket"].nunique()
    assert (buckets == 7 * 8).all()  # every 3-hour bucket of the week, for each type
    assert errors["errors"].sum() == dash.kpis().values["requests"] * dash.kpis().values[
        "error_rate"]
    attempts = dash.attempt_errors()
    assert (attempts["errors"] > 0).all()
    assert set(attempts.columns) == {"bucket", "provider", "error_type", "errors", "end"}


# -- the dashboard object ------------------------------------------------------------------

def test_render_displays_kpis_two_charts_and_two_tables(dash: Dashboard,
                                                       shown: list[Any]) -> None:
    dash.render()
    kinds = [type(item).__name__ for item in shown]
    assert kinds == ["Kpis", "dict", "dict", "_Titled", "_Titled"]
    assert all(VEGALITE_MIMETYPE in item and "image/svg+xml" in item for item in shown[1:3])
    assert [item.title for item in shown[3:]] == ["Top spenders", "Slowest calls"]
    assert "<table" in shown[3]._repr_html_() and "Top spenders" in repr(shown[3])


def test_another_selection_shares_the_store_and_now(dash: Dashboard) -> None:
    other = dash.with_selection(Selection("24h", agent="coder"))
    assert other.store is dash.store and other.now == dash.now
    assert other.window == Window(END - timedelta(hours=24), END, "24h")
    assert other.filters == {"agent": "coder"} and other.bucket == "15m"


def test_a_dashboard_needs_a_workspace_with_events(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no event log"):
        Dashboard(tmp_path / "empty")


# -- the widget --------------------------------------------------------------------------

def test_widget_dropdowns_come_from_the_log(dash: Dashboard) -> None:
    widget = dash.widget()
    assert set(widget.dropdowns) == {"period", *FILTER_DIMENSIONS}
    assert widget.dropdowns["period"].value == "7d"
    options = filter_options(dash.store)
    for name in FILTER_DIMENSIONS:
        assert list(widget.dropdowns[name].options) == [ALL, *options[name]]
        assert widget.dropdowns[name].value == ALL


def test_a_dropdown_change_redraws_the_picked_selection() -> None:
    drawn: list[Selection] = []
    options = {"model": ["a", "b"], "agent": ["coder"], "user": [], "variant": []}
    widget = DashboardWidget(Selection("14d", user="ann"), options, drawn.append)
    assert list(widget.dropdowns["user"].options) == [ALL, "ann"]
    widget.dropdowns["model"].value = "b"
    widget.dropdowns["period"].value = "24h"
    widget.dropdowns["user"].value = ALL
    assert drawn == [Selection("14d", model="b", user="ann"), Selection("24h", model="b",
                                                                        user="ann"),
                     Selection("24h", model="b")]
    assert widget.selection == drawn[-1] and "period 24h · model b" in widget.status.value


def test_the_explorer_draws_the_dashboard_of_the_new_selection(dash: Dashboard,
                                                              shown: list[Any]) -> None:
    widget = dash.widget()
    widget.dropdowns["agent"].value = "coder"
    kpis = shown[0]
    assert isinstance(kpis, Kpis) and kpis.label.startswith("period 7d · all models · agent "
                                                            "coder")
    assert kpis.values["requests"] == dash.with_selection(Selection("7d", agent="coder")) \
        .kpis().values["requests"]
    assert len(shown) == 5


def test_the_module_lists_its_public_names() -> None:
    assert {"Dashboard", "slowest_calls", "top_spenders", "alert_history",
            "provider_issues"} <= set(dashboard_module.__all__)
