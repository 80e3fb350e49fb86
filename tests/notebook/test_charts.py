"""The chart builders: valid Vega-Lite that vl-convert draws, built from aggregated rows,
linked by a legend-bound model selection and a time brush, times shown in UTC; and the
alert spans behind the alert timeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devora_lab.events import EventLog
from devora_lab.monitoring.windows import Window
from devora_lab.notebook import charts
from devora_lab.notebook.dashboard import Dashboard
from devora_lab.notebook.display import chart_svg
from devora_lab.sim.workload import generate_workload

END = datetime(2026, 11, 18, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    log = EventLog(tmp_path_factory.mktemp("charts") / "events")
    generate_workload(log, days=2, calls_per_day=1500, seed=5, end=END, progress=False)
    log.close()
    with log.store() as store:
        yield Dashboard(store=store, period="2d", now=END)


def units(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every single-view spec inside a (nested) composition."""
    if "mark" in spec:
        yield spec
    for key in ("vconcat", "hconcat", "layer"):
        for child in spec.get(key, []):
            yield from units(child)
    if "spec" in spec:
        yield from units(spec["spec"])


def test_every_chart_renders_to_svg_with_tooltips(dash: Dashboard) -> None:
    built: list[Any] = [
        dash.linked_chart(), dash.latency_chart(), charts.errors_chart(dash.error_trend()),
        charts.cache_chart(dash.model_trend()), charts.requests_chart(dash.model_trend()),
        charts.cost_chart(dash.model_trend()), charts.model_latency_chart(dash.model_trend()),
        charts.provider_errors_chart(dash.attempt_errors()),
        charts.retries_chart(dash.retry_trend()),
        charts.alert_timeline(dash.alerts(), dash.window)]
    for chart in built:
        spec = chart.to_dict()  # validates against the Vega-Lite v5 schema
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v5")
        assert all("tooltip" in unit["encoding"] for unit in units(spec)), spec
        svg = chart_svg(chart)
        assert svg.lstrip().startswith("<svg") and "<path" in svg


def test_charts_get_aggregated_rows_not_events(dash: Dashboard) -> None:
    trend = dash.model_trend()
    calls = dash.store.count("llm.call")
    spec = dash.linked_chart().to_dict()
    sizes = sorted(len(rows) for rows in spec["datasets"].values())
    assert sizes == sorted([len(trend), len(dash.error_trend())])
    assert len(trend) < calls / 4  # a few hundred rows for thousands of calls


def test_linked_view_shares_a_legend_selection_and_a_time_brush(dash: Dashboard) -> None:
    spec = dash.linked_chart().to_dict()
    params = {p["name"]: p for p in spec["params"]}  # altair lifts them to the top
    requests = next(unit for unit in units(spec) if unit.get("title") == "Requests")
    assert params["model_pick"]["select"] == {"type": "point", "fields": ["model"]}
    assert params["model_pick"]["bind"] == "legend"
    assert params["time_brush"]["select"] == {"type": "interval", "encodings": ["x"]}
    assert params["model_pick"]["views"] == params["time_brush"]["views"] == [requests["name"]]
    text = json.dumps(spec)
    # the other views follow the brush and highlight the picked model
    assert text.count('"filter": {"param": "time_brush"}') == 5
    assert text.count('"param": "model_pick"') >= 4
    titles = [unit.get("title") for unit in units(spec)]
    assert {"Requests", "Cost", "p95 latency by model", "Cost by model",
            "Cache hit rate", "Failed calls by error type"} <= set(titles)


def test_times_are_drawn_in_utc_and_bars_span_their_bucket() -> None:
    frame = pd.DataFrame({"bucket": pd.to_datetime(["2026-11-17 13:00", "2026-11-17 16:00"],
                                                   utc=True).tz_convert("Asia/Tokyo"),
                          "model": ["a", "a"], "requests": [3, 4]})
    data = charts.requests_chart(frame).to_dict()["datasets"]
    rows = next(iter(data.values()))
    assert rows[0]["bucket"] == "2026-11-17T13:00:00"  # no offset: Vega shows it as is
    assert rows[0]["end"] == "2026-11-17T16:00:00"
    assert frame["bucket"].dt.tz is not None  # the caller's frame is left alone


def test_sparse_rows_keep_their_own_bucket_end(dash: Dashboard) -> None:
    errors = dash.attempt_errors()
    assert ((errors["end"] - errors["bucket"]) == pd.Timedelta(dash.bucket)).all()
    spec = charts.provider_errors_chart(errors).to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert all(pd.Timestamp(r["end"]) - pd.Timestamp(r["bucket"]) == pd.Timedelta(hours=1)
               for r in rows)


def test_empty_frames_still_draw(dash: Dashboard) -> None:
    empty = dash.with_selection(dash.selection.with_values(model="no-such-model"))
    for chart in (empty.linked_chart(), empty.latency_chart(),
                  charts.provider_errors_chart(empty.attempt_errors()),
                  charts.alert_timeline(empty.alerts().iloc[0:0], empty.window)):
        assert chart_svg(chart).lstrip().startswith("<svg")


# -- alert spans -------------------------------------------------------------------------

T0 = datetime(2026, 11, 17, tzinfo=timezone.utc)


def history(*rows: tuple[int, str, str, str | None, float | None]) -> pd.DataFrame:
    """Alert history rows: (minutes after T0, name, state, group, value)."""
    return pd.DataFrame([{"ts": T0 + timedelta(minutes=m), "kind": "alert", "name": name,
                          "state": state, "severity": "critical", "group": group,
                          "value": value, "threshold": 0.1, "summary": ""}
                         for m, name, state, group, value in rows])


def test_a_firing_and_its_resolution_make_one_span() -> None:
    spans = charts.alert_spans(history((10, "err", "firing", None, 0.2),
                                       (20, "err", "firing", None, 0.5),
                                       (40, "err", "resolved", None, 0.05)))
    assert spans.to_dict("records") == [{
        "lane": "err", "start": T0 + timedelta(minutes=10), "end": T0 + timedelta(minutes=40),
        "severity": "critical", "peak": 0.5, "ongoing": False}]


def test_open_and_early_spans_are_cut_at_the_window() -> None:
    until = T0 + timedelta(hours=2)
    spans = charts.alert_spans(history((5, "err", "resolved", None, None),
                                       (30, "err", "firing", "gpt-4o", 0.3),
                                       (50, "lat", "firing", None, 900.0)),
                               since=T0, until=until)
    by_lane = {row["lane"]: row for row in spans.to_dict("records")}
    assert by_lane["err"]["start"] == T0 and not by_lane["err"]["ongoing"]
    assert by_lane["err [gpt-4o]"]["end"] == until and by_lane["err [gpt-4o]"]["ongoing"]
    assert by_lane["lat"]["ongoing"] and len(by_lane) == 3


def test_budget_events_are_marks_not_spans() -> None:
    frame = history((10, "err", "firing", None, 0.2))
    frame.loc[1] = {**frame.loc[0].to_dict(), "kind": "budget", "name": "daily-user-spend",
                    "state": "crossed", "group": "hiro"}
    assert charts.alert_spans(frame, until=T0 + timedelta(hours=1))["lane"].tolist() == ["err"]
    spec = charts.alert_timeline(frame, Window(T0, T0 + timedelta(hours=1))).to_dict()
    rows = [r for data in spec["datasets"].values() for r in data if "lane" in r]
    assert "budget: daily-user-spend [hiro]" in {r["lane"] for r in rows}


def test_the_timeline_spans_the_whole_window(tmp_path: Path) -> None:
    window = Window(T0, T0 + timedelta(days=1))
    spec = charts.alert_timeline(history((60, "err", "firing", None, 0.2)), window).to_dict()
    x = spec["layer"][0]["encoding"]["x"]
    assert x["scale"]["domain"] == ["2026-11-17T00:00:00", "2026-11-18T00:00:00"]
